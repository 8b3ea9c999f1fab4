import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
import torch
import torchvision

from tests._maskrcnn_data import TINY
from wsseg.bench.cams import cams_table
from wsseg.bench.command import SECTIONS, check_start, parse_sections, run_bench
from wsseg.bench.common import SHIPPED, TRAINED, bench_classifier
from wsseg.demo.project import DEMO_CHECKPOINT
from wsseg.errors import BadInputError, DataNotFoundError
from wsseg.methods.cams import METHODS
from wsseg.models.classifier import ClassifierConfig
from wsseg.stages.recipes import (
    BenchPlan,
    MaskRCNNPlan,
    Start,
    classifier_config,
    curation_plan,
    maskrcnn_plan,
    plan_for,
)
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
    cams = stored["cams"]  # every CAM method scored on the validation images, PRM's map among them
    assert set(cams) >= set(METHODS) and 1 <= cams["images"] <= 8 and cams["best_pointing"] in METHODS
    for method in METHODS:
        row = cams[method]
        assert all(0.0 <= row[k] <= 1.0 for k in ("pointing", "peak_precision", "instance_recall", "miou"))
        assert row["seconds_per_image"] > 0 and row["seconds_256"] > 0
    assert "## CAM methods" in (tmp_path / "report.md").read_text()
    assert cams["skipped"] == {}  # 24 channels: Score-CAM runs
    skipped = {**cams, "skipped": {"scorecam": "1280 channels at the scored layer"}}
    del skipped["scorecam"]
    assert "| Score-CAM | not run: 1280 channels" in "\n".join(cams_table(skipped))


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
        "cams",
        "proposals_pseudo_masks",
        "speed",
        "total",
    }
    md = (tmp_path / "report.md").read_text()
    assert "**Partial report**" in md and "stages done: data, classifier_train" in md


def test_only_the_chosen_sections_follow_the_classifier(tmp_path: Path) -> None:
    plan = BenchPlan(
        train_images=8,
        val_images=4,
        classifier=ClassifierConfig(num_classes=4, backbone="small", small_width=8),
        train=TrainConfig(epochs=1, batch_size=8, lr=1e-3),
    )
    report = run_bench("shapes", quick=True, out=tmp_path, plan=plan, sections=parse_sections("cams"))
    assert report["sections"] == ["cams"] and "cams" in report and "classifier" in report
    assert not {"pseudo_masks", "speed", "ple", "maskrcnn"} & set(report)
    with pytest.raises(BadInputError, match="--only"):
        parse_sections("cams,nope")


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


def test_a_pretrained_start_reaches_the_classifier_and_both_mask_rcnns(tmp_path: Path) -> None:
    """``--weights``: the classifier and both Mask R-CNNs load the file (a torchvision MobileNetV2 state
    dict, as ../shared/weights/ holds); the Mask R-CNNs keep its BatchNorm statistics frozen; the report
    names the file by its SHA-256."""
    weights = tmp_path / "mobilenet_v2.pth"
    torch.manual_seed(3)
    reference = torchvision.models.mobilenet_v2(weights=None).state_dict()
    for key in reference:  # statistics no initialisation would give, to recognise them downstream
        if key.endswith("running_mean"):
            reference[key].uniform_(-1, 1)
    shared_format = {  # as ../shared/weights/ has it: features.* only, no BatchNorm step counters
        k: v
        for k, v in reference.items()
        if k.startswith("features.") and not k.endswith("num_batches_tracked")
    }
    torch.save(shared_format, weights)
    start = check_start(None, str(weights))
    assert start == Start("mobilenet_v2", str(weights.resolve()))
    plan = dataclasses.replace(
        plan_for("shapes", True, 4, 0, start),
        train_images=8,
        val_images=4,
        train=TrainConfig(epochs=1, batch_size=4, lr=1e-9),  # the weights barely move: recognisable
        ple=False,
        pseudo_every=2,
        maskrcnn_epochs=1,
        maskrcnn_images=4,
    )
    cams = {"cams"}  # measured by the tiny bench above; with a MobileNetV2 it only costs time here
    sections = tuple(s for s in SECTIONS if s not in cams)
    report = run_bench("shapes", quick=True, out=tmp_path / "out", plan=plan, sections=sections)
    assert report["start"]["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert "mobilenet_v2" in report["classifier"]["source"]
    project = Project(tmp_path / "out" / "work" / "project")
    classifier = load_checkpoint(project.root / "checkpoints" / "classifier" / CHECKPOINT)["model"]
    first = reference["features.0.0.weight"]
    assert torch.allclose(classifier["backbone.body.features.0.0.weight"], first, atol=1e-6)
    for arm in ("maskrcnn-full", "maskrcnn-weak"):
        state = load_checkpoint(project.root / "checkpoints" / arm / CHECKPOINT)["model"]
        frozen = state["backbone.body.3.conv.0.1.running_mean"]
        assert torch.equal(frozen, reference["features.3.conv.0.1.running_mean"]), arm
    assert report["maskrcnn"]["plan"]["model"]["backbone"] == "mobilenet_v2"
    full = report["maskrcnn"]["full"]
    assert len(full["val_map50_curve"]) == 1  # one epoch: the upper bound's validation curve
    assert full["val_map50_curve"][-1] == pytest.approx(full["map50"])  # the same model, the same images
    batchnorm = report["maskrcnn"]["batchnorm"]  # the upper bound again with trainable BatchNorm
    assert batchnorm["frozen"]["map50"] == full["map50"] and 0.0 <= batchnorm["trainable"]["map50"] <= 1.0
    trainable = load_checkpoint(project.root / "checkpoints" / "maskrcnn-full-trainable-bn" / CHECKPOINT)
    moved = trainable["model"]["backbone.body.3.conv.0.1.running_mean"]
    assert not torch.equal(moved, reference["features.3.conv.0.1.running_mean"])  # its statistics moved


def test_bench_weights_are_checked_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="weights file not found"):
        check_start(None, str(tmp_path / "missing.pth"))
    with pytest.raises(BadInputError, match="--backbone small"):
        check_start("small", str(tmp_path / "missing.pth"))
    with pytest.raises(BadInputError, match="only used with --weights"):
        check_start("mobilenet_v2", None)
    assert check_start(None, None) is None


def test_pretrained_plans_change_only_the_start_and_its_schedule() -> None:
    start = Start("mobilenet_v2", "/w.pth")
    for dataset, classes in (("nuclei", 1), ("camvid", 11), ("coco", 69), ("shapes", 4)):
        scratch, pretrained = (
            plan_for(dataset, False, classes, 0),
            plan_for(dataset, False, classes, 0, start),
        )
        assert pretrained.classifier.backbone == "mobilenet_v2" and pretrained.classifier.weights == "/w.pth"
        assert pretrained.train.lr < scratch.train.lr
        same = ("train_images", "val_images", "size", "augment", "ple", "peak_scale", "pseudo_variant")
        assert [getattr(pretrained, k) for k in same] == [getattr(scratch, k) for k in same], dataset
        assert pretrained.maskrcnn_epochs == scratch.maskrcnn_epochs
    coco = plan_for("coco", False, 69, 0)
    assert coco.size == 320 and coco.maskrcnn_model is not None
    mplan = maskrcnn_plan(False, 69, 0, model=coco.maskrcnn_model, augment=coco.augment)
    assert mplan.model.image_size == 240 and not mplan.augment.colour  # photos keep their colours
    quick = plan_for("shapes", True, 4, 0, start)
    assert not quick.shipped_classifier  # the shipped classifier has the small backbone: not this start
    mplan = maskrcnn_plan(False, 1, 0, init="classifier", start=start)
    assert mplan.init is None and mplan.model.weights == "/w.pth" and mplan.model.backbone == "mobilenet_v2"


def test_a_frozen_backbone_start_reaches_the_classifier_plan_and_the_report(tmp_path: Path) -> None:
    from wsseg.bench.command import start_record

    with pytest.raises(BadInputError, match="--frozen-backbone"):
        check_start(None, None, frozen_backbone=True)
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"x")
    start = check_start(None, str(weights), frozen_backbone=True)
    assert start == Start("mobilenet_v2", str(weights.resolve()), frozen_backbone=True)
    plan = plan_for("coco", False, 69, 0, start)
    assert plan.classifier.frozen_backbone and plan.classifier.weights == str(weights.resolve())
    assert not plan_for("coco", False, 69, 0, check_start(None, str(weights))).classifier.frozen_backbone
    record = start_record(start)
    assert record["frozen_backbone"] is True and "only its head trained" in record["what"]
    assert record["sha256"] == hashlib.sha256(b"x").hexdigest()
