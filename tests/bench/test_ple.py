"""The PLE benchmark on a tiny shapes project: every report key, measured, and the ratio consistent."""

import math
from pathlib import Path

import pytest

from wsseg.bench.ple import curve_end, ple_bench
from wsseg.data.shapes import ShapesConfig, write_shapes_dataset
from wsseg.methods.crf import CRFConfig
from wsseg.models.classifier import ClassifierConfig
from wsseg.stages.recipes import PLEBenchPlan
from wsseg.stages.train_classifier import train_classifier
from wsseg.store.importer import import_source
from wsseg.store.project import Project
from wsseg.training.engine import CHECKPOINT, TrainConfig, load_checkpoint


def test_tiny_ple_bench_reports_every_key(tmp_path: Path) -> None:
    project = Project.create(tmp_path / "p")
    write_shapes_dataset(tmp_path / "train", 8, ShapesConfig(seed=1))
    write_shapes_dataset(tmp_path / "val", 2, ShapesConfig(seed=2))
    import_source(project, tmp_path / "train", split="train")
    import_source(project, tmp_path / "val", split="val")
    plan = PLEBenchPlan(
        TrainConfig(epochs=1, batch_size=4, seed=0),
        augment=None,
        crf=CRFConfig(iterations=1),
        rounds=3,
        full_train=TrainConfig(epochs=2, batch_size=4, seed=0),  # the upper bound's own, longer schedule
    )
    report = ple_bench(project, "shapes", quick=True, plan=plan)
    for key in ("weak_miou", "weak_crf_miou", "full_miou"):
        assert 0.0 <= report[key] <= 1.0, key
    if report["full_miou"] > 0:  # two steps of training may leave the baseline at zero
        assert math.isclose(report["weak_over_full_miou"], report["weak_miou"] / report["full_miou"])
    else:
        assert math.isnan(report["weak_over_full_miou"])
    assert set(report["ablation"]) == {
        "estimator_only_miou",
        "estimator_only_crf_miou",
        "no_neighbourhood_miou",
        "no_crf_miou",
    }
    assert len(report["full_val_miou_curve"]) == 2  # the upper bound's validation mIoU, one per epoch
    weak_history = load_checkpoint(project.root / "checkpoints" / "ple" / CHECKPOINT)["history"]
    assert len(weak_history) == 1  # the weak arm kept its own schedule
    assert report["plan"]["full_train"]["epochs"] == 2 and report["plan"]["train"]["epochs"] == 1
    assert report["full_last_gain"] is None and report["full_trained_out"] is None  # too short to tell
    assert report["full_val_miou_curve"][-1] == pytest.approx(report["full_miou"])  # same model and images
    assert [r["round"] for r in report["rounds"]] == [1, 2, 3]
    assert report["rounds"][-1]["miou"] == report["weak_miou"]
    assert report["ablation"]["estimator_only_miou"] == report["rounds"][0]["miou"]
    assert report["val_pixels"] == 2 * 160 * 160 and report["backbone_init"] == "random"
    runs = {run.config["name"]: run.config for run in project.runs("ple")}
    assert set(runs) == {"ple", "ple-round2", "ple-round3", "ple-no-neighbourhood", "ple-full"}
    assert runs["ple-round2"]["labels_from"] == "ple" and runs["ple-round3"]["labels_from"] == "ple-round2"


def test_the_estimators_take_the_classifiers_backbone(tmp_path: Path) -> None:
    """A pretrained start's classifier (MobileNetV2 here) starts the estimator's networks with its own
    backbone: the segmenter finds MobileNetV2's stride-4 layer inside its one ``features`` sequence."""
    project = Project.create(tmp_path / "p")
    write_shapes_dataset(tmp_path / "train", 4, ShapesConfig(seed=1))
    write_shapes_dataset(tmp_path / "val", 1, ShapesConfig(seed=2))
    import_source(project, tmp_path / "train", split="train")
    import_source(project, tmp_path / "val", split="val")
    config = ClassifierConfig(num_classes=4, backbone="mobilenet_v2", peak_stimulation=False)
    train_classifier(project, config, TrainConfig(epochs=1, batch_size=4), name="classifier")
    plan = PLEBenchPlan(TrainConfig(epochs=1, batch_size=4, seed=0), augment=None, rounds=1)
    report = ple_bench(project, "shapes", quick=True, plan=plan)
    assert report["backbone"] == "mobilenet_v2" and report["backbone_init"] == "classifier"
    classifier = load_checkpoint(project.root / "checkpoints" / "classifier" / CHECKPOINT)["model"]
    full = load_checkpoint(project.root / "checkpoints" / "ple-full" / CHECKPOINT)["model"]
    key = "backbone.body.features.0.0.weight"  # the first conv: one step at lr 1e-3 moves it little
    assert full[key].shape == classifier[key].shape
    assert (full[key] - classifier[key]).abs().max() < 0.01
    assert 0.0 <= report["full_miou"] <= 1.0


def test_the_upper_bound_is_trained_out_when_its_last_epochs_add_under_a_point() -> None:
    rising = [0.22, 0.33, 0.40, 0.40, 0.415, 0.418]  # CamVid's 6-epoch curve: +0.018 over 0.40
    assert curve_end(rising)["full_last_gain"] == pytest.approx(0.018)
    assert curve_end(rising)["full_trained_out"] is False
    flat = [0.2, 0.4, 0.45, 0.452, 0.455, 0.449]  # best of the last three 0.455 against 0.45
    assert curve_end(flat) == {"full_last_gain": pytest.approx(0.005), "full_trained_out": True}
    falling = [0.3, 0.5, 0.48, 0.47, 0.46]
    assert curve_end(falling)["full_last_gain"] == pytest.approx(-0.02)
    assert curve_end(falling)["full_trained_out"] is True
    assert curve_end([0.1, 0.2, 0.3]) == {"full_last_gain": None, "full_trained_out": None}
