import dataclasses
import json
from pathlib import Path

import pytest
import torch

from tests._maskrcnn_data import TINY
from wsseg.bench.command import run_bench
from wsseg.bench.common import SHIPPED, TRAINED, bench_classifier
from wsseg.demo.project import DEMO_CHECKPOINT
from wsseg.errors import BadInputError, DataNotFoundError
from wsseg.models.classifier import ClassifierConfig
from wsseg.stages.recipes import BenchPlan, MaskRCNNPlan, classifier_config, curation_plan, plan_for
from wsseg.store.project import Project
from wsseg.training.engine import CHECKPOINT, TrainConfig, load_checkpoint


def test_tiny_shapes_bench_writes_real_figures(tmp_path: Path) -> None:
    plan = BenchPlan(
        train_images=16,
        val_images=8,
        classifier=ClassifierConfig(num_classes=4, backbone="small", small_width=8),
        train=TrainConfig(epochs=1, batch_size=8, lr=1e-3),
        maskrcnn=MaskRCNNPlan(
            dataclasses.replace(TINY, backbone="small", small_width=8),
            TrainConfig(epochs=1, batch_size=4, lr=1e-3),
            max_images=8,
            init="classifier",  # both trainings start from the bench's classifier
        ),
    )
    report = run_bench("shapes", quick=True, out=tmp_path, plan=plan)
    stored = json.loads((tmp_path / "report.json").read_text())
    assert stored["sizes"]["train_images"] == 16 and stored["sizes"]["val_images"] == 8
    cls = stored["classifier"]
    assert 0.0 <= cls["cls_map"] <= 1.0
    assert 0.0 <= cls["instance_recall"] <= 1.0 and cls["count_mae"] >= 0.0
    assert set(cls) >= {"peak_precision", "prm_point_precision", "prm_point_recall", "peaks_per_image"}
    assert stored["speed"]["crm_peaks_over_forward"] > 0
    assert stored["speed"]["app_overlay_ms"] > 0
    assert stored["maskrcnn"]["plan"]["init"] == "classifier"
    project = Project(tmp_path / "work" / "project")
    assert {r.config["init"] for r in project.runs("maskrcnn")} == {"classifier"}
    full = stored["maskrcnn"]["full"]
    assert all(0.0 <= full[k] <= 1.0 for k in ("map25", "map50", "map75", "pointing_accuracy"))
    assert full["map25"] >= full["map50"] >= full["map75"] and full["count_mae"] >= 0.0
    weak = stored["maskrcnn"]["weak"]  # the same model and schedule on the bench's pseudo masks
    assert all(0.0 <= weak[k] <= 1.0 for k in ("map25", "map50", "map75", "pointing_accuracy"))
    if full["map50"] > 0:
        assert stored["maskrcnn"]["weak_over_full_map50"] == pytest.approx(weak["map50"] / full["map50"])
    # Stages not built yet are absent, never faked.
    for later in ("ple", "curation"):
        assert later not in stored
    assert 0.0 <= stored["proposals"]["abo"] <= 1.0 and stored["proposals"]["over_felzenszwalb"] > 0
    for row in ("prm", "wise", "oracle"):
        assert set(stored["pseudo_masks"][row]) >= {"map25", "map50", "map75"}
    assert "annotations" in json.loads(Path(stored["pseudo_masks"]["coco"]).read_text())
    assert "`classifier.cls_map`" in (tmp_path / "report.md").read_text()
    assert stored["classifier"]["source"] == TRAINED and stored["plan"]["shipped_classifier"] is False
    assert report["seconds"]["total"] >= report["seconds"]["classifier_train"]
    assert stored["complete"] is True and "Partial report" not in (tmp_path / "report.md").read_text()


def test_a_stopped_bench_keeps_the_stages_it_finished(tmp_path: Path, monkeypatch) -> None:
    """Ctrl-C during the Mask R-CNN stage: report.json already holds every earlier stage's figures."""
    import wsseg.bench.command

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(wsseg.bench.command, "bench_maskrcnn", interrupted)
    plan = BenchPlan(
        train_images=8,
        val_images=4,
        classifier=ClassifierConfig(num_classes=4, backbone="small", small_width=8),
        train=TrainConfig(epochs=1, batch_size=8, lr=1e-3),
    )
    with pytest.raises(KeyboardInterrupt):
        run_bench("shapes", quick=True, out=tmp_path, plan=plan)
    stored = json.loads((tmp_path / "report.json").read_text())
    assert stored["complete"] is False and "maskrcnn" not in stored
    assert 0.0 <= stored["classifier"]["cls_map"] <= 1.0 and "prm" in stored["pseudo_masks"]
    assert set(stored["seconds"]) == {
        "data",
        "classifier_train",
        "classifier_eval",
        "proposals_pseudo_masks",
        "speed",
        "total",
    }
    md = (tmp_path / "report.md").read_text()
    assert "**Partial report**" in md and "stages done: data, classifier_train" in md


def test_real_dataset_missing_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="nuclei"):
        run_bench("nuclei", quick=True, out=tmp_path, data_root=tmp_path / "nowhere")


def test_only_the_quick_shapes_plan_starts_from_the_shipped_classifier() -> None:
    assert plan_for("shapes", True, 4, 0).shipped_classifier
    assert not plan_for("shapes", False, 4, 0).shipped_classifier  # the full bench trains its own
    assert not plan_for("nuclei", True, 1, 0).shipped_classifier  # it knows shapes only
    assert not plan_for("camvid", True, 11, 0).shipped_classifier
    # The curation bench trains its own.
    assert not curation_plan("shapes", True, 4, 0).bench.shipped_classifier


def test_the_quick_shapes_path_measures_the_shipped_classifier(tmp_path: Path) -> None:
    """The quick shapes plan's code path on a tiny scale: the shipped weights are the run's classifier,
    evaluated, named in the report, and the Mask R-CNNs start from them. Pseudo masks of one image
    (its stages then run in this process, no worker pool to start)."""
    plan = BenchPlan(
        train_images=8,
        val_images=4,
        classifier=classifier_config(4),
        train=TrainConfig(epochs=1),
        shipped_classifier=True,
        pseudo_every=8,
        maskrcnn=MaskRCNNPlan(
            dataclasses.replace(TINY, backbone="small", small_width=32, roi_sampling_ratio=1),
            TrainConfig(epochs=1, batch_size=4, lr=1e-3),
            max_images=4,
            init="classifier",
        ),
    )
    run_bench("shapes", quick=True, out=tmp_path, plan=plan)
    stored = json.loads((tmp_path / "report.json").read_text())
    project = Project(tmp_path / "work" / "project")
    used = load_checkpoint(project.root / "checkpoints" / "classifier" / CHECKPOINT)["model"]
    shipped = load_checkpoint(DEMO_CHECKPOINT)["model"]
    assert used.keys() == shipped.keys() and all(torch.equal(used[k], shipped[k]) for k in shipped)
    assert [r.config["source"] for r in project.runs("classifier")] == [str(DEMO_CHECKPOINT)]
    assert stored["classifier"]["source"] == SHIPPED == "shipped demo classifier (assets/demo-classifier.pt)"
    assert 0.0 <= stored["classifier"]["cls_map"] <= 1.0 and "peak_precision" in stored["classifier"]
    assert stored["plan"]["shipped_classifier"] is True and stored["plan"]["train"] is None
    assert stored["plan"]["classifier"]["small_width"] == 32  # the shipped model's config
    assert "classifier_install" in stored["seconds"] and "classifier_train" not in stored["seconds"]
    assert {r.config["init"] for r in project.runs("maskrcnn")} == {"classifier"}
    assert f"Classifier: {SHIPPED}." in (tmp_path / "report.md").read_text()


def test_the_shipped_classifier_must_know_the_bench_classes(tmp_path: Path) -> None:
    project = Project.create(tmp_path / "project")
    project.add_classes(["cat", "dog"])
    plan = BenchPlan(1, 1, classifier_config(2), TrainConfig(epochs=1), shipped_classifier=True)
    with pytest.raises(BadInputError, match="disc"):
        bench_classifier(project, plan)
