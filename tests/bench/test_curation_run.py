"""``wsseg bench --curation``'s retraining path on a tiny project: three Mask R-CNNs trained for real on
the automatic and the two curated pseudo-mask sets, their figures recomputed from their checkpoints,
and the given project never written."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
import torch

from tests._maskrcnn_data import TINY, tiny_project
from wsseg.bench.curation_run import make_pseudo_masks_runs, run_curation_bench, with_classifier_start
from wsseg.bench.maskrcnn import classifier_start
from wsseg.cli import build_parser
from wsseg.data.coco import read_coco
from wsseg.data.images import read_image
from wsseg.methods.mask_map import mask_map
from wsseg.models.classifier import ClassifierConfig
from wsseg.models.maskrcnn import predict
from wsseg.stages.recipes import INFERENCE_PEAKS, CurationPlan, MaskRCNNPlan, curation_plan, plan_for
from wsseg.stages.train_classifier import train_classifier
from wsseg.stages.train_maskrcnn import load_maskrcnn
from wsseg.store.instances import true_instances
from wsseg.store.project import DB_NAME, Project
from wsseg.training.engine import TrainConfig


def _state(root: Path) -> tuple[dict[str, str], list[str]]:
    """Every file's digest (the database aside) and the database's content as SQL."""
    files = {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(DB_NAME)
    }
    with closing(sqlite3.connect(root / DB_NAME)) as conn:
        return files, list(conn.iterdump())


def test_curation_bench_retrains_on_each_set_and_never_writes_the_project(tmp_path: Path) -> None:
    project = tiny_project(tmp_path, n_train=12, n_val=4)
    classifier = ClassifierConfig(num_classes=4, backbone="small", small_width=8, peak_stimulation=False)
    train_classifier(project, classifier, TrainConfig(epochs=1, batch_size=12), augment=None)
    run = make_pseudo_masks_runs(project, (0, 1), workers=1)
    peaks = project.latest_run("peaks").config  # the benchmark's peaks are the recipe's
    assert peaks["prm"] == dataclasses.asdict(INFERENCE_PEAKS.prm_config())
    assert peaks["scale"] == INFERENCE_PEAKS.scale
    # Mask R-CNN trains on the first 8 images with masks; only their masks are reviewed
    first = sorted({m["image_id"] for m in project.pseudo_masks(run_id=run)})[:8]
    masks = sum(1 for m in project.pseudo_masks(run_id=run) if m["image_id"] in first)
    assert masks >= 2
    original = _state(project.root)

    # the plan the command would make starts the Mask R-CNNs from the small-backbone classifier
    assert classifier_start(project) == ("classifier", 8)
    made = with_classifier_start(curation_plan("shapes", True, 4, 0), project).maskrcnn
    assert made.init == "classifier" and (made.model.backbone, made.model.small_width) == ("small", 8)
    model = dataclasses.replace(TINY, backbone="small", small_width=8, roi_sampling_ratio=1)
    plan = CurationPlan(
        bench=plan_for("shapes", True, 4, 0),  # unused: the project is given
        shard=(0, 1),
        review_fraction=0.5,
        maskrcnn=MaskRCNNPlan(
            model, TrainConfig(epochs=1, batch_size=2, lr=1e-3), max_images=8, init="classifier"
        ),
    )
    out = tmp_path / "out"
    run_curation_bench("shapes", True, out, project_root=project.root, plan=plan)
    report = json.loads((out / "report.json").read_text())
    section = report["curation"]
    assert section["n"] == round(0.5 * masks) and section["pseudo_masks_run"] == run
    reviewed = section["pseudo_masks"]["queue"]
    assert reviewed["accepted"] + reviewed["swapped"] + reviewed["rejected"] == section["n"]
    assert "`curation.map50_after_queue`" in (out / "report.md").read_text()

    # Each figure is its model's: rescore every checkpoint on the validation images here.
    copy = Project(out / "curation" / "train")
    records = copy.images(split="val")
    truth = true_instances(copy, records)
    weights = {}
    for name, key in (
        ("before", "map50_before"),
        ("queue", "map50_after_queue"),
        ("random", "map50_after_random"),
    ):
        value = section[key]
        assert isinstance(value, float) and 0.0 <= value <= 1.0
        model, _, extra = load_maskrcnn(copy, f"maskrcnn-{name}")
        assert extra["model"]["backbone"] == "small" and extra["init"] == "classifier"
        coco = read_coco(extra["coco"])
        assert section["maskrcnn"][name]["train_images"] == len(coco.images) > 0
        assert {i.id for i in coco.images} <= set(first)
        predicted = {r.id: predict(model, [read_image(copy.image_path(r))])[0] for r in records}
        assert mask_map(truth, predicted, 4).maps["map50"] == pytest.approx(value)
        weights[name] = torch.cat([p.flatten() for p in model.parameters()])
    # the three sets differ where the annotator changed something, and so do the trained weights
    if reviewed["swapped"] + reviewed["rejected"] > 0:
        assert not torch.equal(weights["before"], weights["queue"])
    assert section["queue_over_random_map50"] == pytest.approx(
        section["map50_after_queue"] - section["map50_after_random"]
    )
    assert np.isfinite(report["seconds"]["total"])

    assert _state(project.root) == original  # the given project was never written
    args = build_parser().parse_args(["bench", "--curation", "--project", str(project.root)])
    assert args.curation and args.project == project.root
