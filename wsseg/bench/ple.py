"""The pixel-label estimator's benchmark: weak (tags) against full (pixel labels) supervision, mIoU.

The networks train with one schedule on the benchmark project's training images: the estimator (round
1), its self-training rounds (round k + 1 trains on round k's tag-masked, CRF-refined predictions of the
training images: ``train-ple --labels-from``), the estimator without the neighbourhood loss (ablation)
and the fully supervised baseline. All start from the backbone of the benchmark's classifier (trained on
the same tags) when there is one. mIoU on the validation images, every weak round's also after the
dense CRF. The weak figures are the last round's.

- shapes: labels painted from the ground-truth instances (background + 4 classes); the project's
  validation images.
- camvid: the training crops' label maps for the baseline (tags for the others); the whole 480x360
  validation images (unlabelled pixels ignored), 11 classes, no background.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wsseg.data.images import read_image
from wsseg.data.real import CAMVID_CLASSES, camvid
from wsseg.methods.ple import IGNORE, PLEConfig
from wsseg.models.segmenter import SegmenterConfig
from wsseg.stages.common import checkpoint_state
from wsseg.stages.evaluate_ple import load_ple, score
from wsseg.stages.recipes import PLEBenchPlan, ple_plan
from wsseg.stages.train_ple import SegmentationImages, label_names, project_dataset, train_ple
from wsseg.store.instances import semantic_truth
from wsseg.store.project import Project
from wsseg.training.datasets import Augment, multi_hot
from wsseg.training.engine import CHECKPOINT, load_checkpoint, tqdm_callback


def round_name(k: int) -> str:
    """Run name of weak round ``k`` (1: the estimator, ``ple``)."""
    return "ple" if k == 1 else f"ple-round{k}"


FLAT_EPOCHS = 3
"""The upper bound counts as trained out when its last this many epochs ..."""
FLAT_GAIN = 0.01
"""... raised its best validation mIoU by less than this (one point)."""


def curve_end(curve: list[float]) -> dict[str, Any]:
    """How the upper bound's validation curve ended: ``full_last_gain``, what its last ``FLAT_EPOCHS``
    epochs added to the best before them, and ``full_trained_out`` (that gain under ``FLAT_GAIN``;
    None when the curve is too short to tell)."""
    if len(curve) <= FLAT_EPOCHS:
        return {"full_last_gain": None, "full_trained_out": None}
    gain = max(curve[-FLAT_EPOCHS:]) - max(curve[:-FLAT_EPOCHS])
    return {"full_last_gain": gain, "full_trained_out": bool(gain < FLAT_GAIN)}


def _camvid_labels(labels: np.ndarray) -> np.ndarray:
    out = labels.copy()
    out[labels >= 11] = IGNORE
    return out


def _camvid_data(data_root: Path | None, seed: int, augment: Augment | None) -> SegmentationImages:
    """The bench project's CamVid training crops (the same crops as ``wsseg.bench.data``) with labels."""
    samples = list(camvid(data_root, split="train", crop=160, crop_seed=seed, crops_per_image=2))
    images = np.stack([s.image for s in samples])
    labels = np.stack([_camvid_labels(s.labels) for s in samples])
    tags = multi_hot([s.tags for s in samples], CAMVID_CLASSES)
    return SegmentationImages(images, tags, CAMVID_CLASSES, labels, augment)


def _val_pairs(
    project: Project, dataset: str, data_root: Path | None, limit: int | None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    if dataset == "camvid":
        for k, sample in enumerate(camvid(data_root, split="val")):
            if limit is not None and k >= limit:
                return
            yield sample.image, _camvid_labels(sample.labels)
        return
    records = project.images(split="val", limit=limit)
    for record, truth in zip(records, semantic_truth(project, records, True), strict=True):
        if truth is not None:
            yield read_image(project.image_path(record), record.filename), truth


def ple_bench(
    project: Project,
    dataset: str,
    quick: bool,
    seed: int = 0,
    data_root: Path | None = None,
    plan: PLEBenchPlan | None = None,
) -> dict[str, Any]:
    """Train and score the three networks; return the ``ple`` section of the report."""
    plan = plan or ple_plan(dataset, quick, seed)
    background = dataset != "camvid"
    classes = project.classes()
    labels = label_names(classes, background)
    init = "classifier" if (project.root / "checkpoints" / "classifier" / CHECKPOINT).exists() else None
    model_config = SegmenterConfig(num_labels=len(labels), backbone="small")
    if init is not None:  # the classifier's backbone, whatever it is (small, or a pretrained start's)
        classifier = checkpoint_state(project, init)[1]["extra"]["model"]
        model_config = SegmenterConfig(
            num_labels=len(labels),
            backbone=classifier["backbone"],
            small_width=classifier.get("small_width", SegmenterConfig.small_width),
        )
    weak = PLEConfig(background=background)
    data = (
        _camvid_data(data_root, seed, plan.augment)
        if dataset == "camvid"
        else project_dataset(project, True, background, None, plan.augment, plan.max_images)
    )
    rounds = [round_name(k) for k in range(1, plan.rounds + 1)]
    runs: dict[str, tuple[PLEConfig, bool, str | None]] = {
        name: (weak, False, rounds[k - 1] if k else None) for k, name in enumerate(rounds)
    }
    runs["ple-no-neighbourhood"] = (dataclasses.replace(weak, neighbourhood_weight=0.0), False, None)
    runs["ple-full"] = (weak, True, None)
    seconds: dict[str, float] = {}
    results: dict[str, dict[str, Any]] = {}

    def validate(model: torch.nn.Module) -> dict[str, float]:
        pairs = _val_pairs(project, dataset, data_root, plan.val_images)
        return {"miou": score(model, pairs, len(labels))["plain"]["miou"]}

    for name, (config, full, labels_from) in runs.items():
        t = time.perf_counter()
        train_ple(
            project,
            model_config,
            config,
            (plan.full_train or plan.train) if full else plan.train,
            name=name,
            full=full,
            dataset=data,
            init=init,
            callback=tqdm_callback(name),
            labels_from=labels_from,
            validate=validate if full else None,  # the upper bound's curve: did it stop rising?
        )
        seconds[f"train_{name}"] = time.perf_counter() - t
        t = time.perf_counter()
        model, _ = load_ple(project, name)
        crfs = {"plain": None, "crf": plan.crf} if name in rounds else {"plain": None}
        results[name] = score(
            model, _val_pairs(project, dataset, data_root, plan.val_images), len(labels), crfs
        )
        seconds[f"eval_{name}"] = time.perf_counter() - t
    last = results[round_name(plan.rounds)]
    weak_miou = last["plain"]["miou"]
    full_miou = results["ple-full"]["plain"]["miou"]
    history = load_checkpoint(project.root / "checkpoints" / "ple-full" / CHECKPOINT)["history"]
    curve = [epoch["val_miou"] for epoch in history]
    return {
        "weak_miou": weak_miou,
        "weak_crf_miou": last["crf"]["miou"],
        "full_miou": full_miou,
        "weak_over_full_miou": weak_miou / full_miou if full_miou > 0 else float("nan"),
        "weak_crf_over_full_miou": last["crf"]["miou"] / full_miou if full_miou > 0 else float("nan"),
        "rounds": [
            {
                "round": k,
                "miou": results[round_name(k)]["plain"]["miou"],
                "crf_miou": results[round_name(k)]["crf"]["miou"],
            }
            for k in range(1, plan.rounds + 1)
        ],
        "ablation": {
            "estimator_only_miou": results["ple"]["plain"]["miou"],
            "estimator_only_crf_miou": results["ple"]["crf"]["miou"],
            "no_neighbourhood_miou": results["ple-no-neighbourhood"]["plain"]["miou"],
            "no_crf_miou": weak_miou,
        },
        "full_val_miou_curve": curve,
        **curve_end(curve),
        "weak_iou": dict(zip(labels, last["plain"]["iou"], strict=True)),
        "full_iou": dict(zip(labels, results["ple-full"]["plain"]["iou"], strict=True)),
        "val_pixels": results["ple"]["plain"]["pixels"],
        "backbone_init": init or "random",
        "backbone": model_config.backbone,
        "plan": {
            "train": dataclasses.asdict(plan.train),
            "full_train": dataclasses.asdict(plan.full_train or plan.train),
            "crf": dataclasses.asdict(plan.crf),
            "rounds": plan.rounds,
        },
        "seconds": seconds,
    }
