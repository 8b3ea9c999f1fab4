"""Benchmark of the Mask R-CNN stage: the same model and schedule trained on the true masks (``full``, the
upper bound) and on pseudo masks (``weak``), both scored on the validation split.

Keys: ``full.{map25,map50,map75,pointing_accuracy,count_mae}`` with ``full.val_map50_curve`` (its
validation mAP50 after every epoch), ``weak.*`` when a pseudo-mask COCO
file is given, ``weak_over_full_map50``, and from pretrained weights ``batchnorm.{frozen,trainable}``:
the upper bound with the backbone's BatchNorm frozen (the default) and trainable. Everything goes through the command line's functions
(``train_maskrcnn``, ``evaluate_maskrcnn``).
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch

from wsseg.errors import BadInputError
from wsseg.models.maskrcnn import MaskRCNNConfig, predict
from wsseg.stages.evaluate import evaluate_maskrcnn
from wsseg.stages.pool import default_workers, map_in_order
from wsseg.stages.recipes import MaskRCNNPlan
from wsseg.stages.train_maskrcnn import classifier_width, train_maskrcnn
from wsseg.store.importer import GROUND_TRUTH
from wsseg.store.instances import evaluate_split
from wsseg.store.project import Project
from wsseg.training.engine import CHECKPOINT, load_checkpoint, tqdm_callback

KEYS = ("map25", "map50", "map75", "pointing_accuracy", "count_mae")


def classifier_start(project: Project, name: str = "classifier") -> tuple[str | None, int]:
    """(name, width) of the project's trained classifier ``name`` when a Mask R-CNN can start from it
    (it has the small backbone), else (None, the default width): the ``init`` and ``width`` of the
    benchmark's plans (``wsseg.stages.recipes.maskrcnn_plan``)."""
    if not (project.root / "checkpoints" / name / CHECKPOINT).exists():
        return None, MaskRCNNConfig.small_width
    try:
        return name, classifier_width(project, name)
    except BadInputError:  # not a small-backbone classifier
        return None, MaskRCNNConfig.small_width


def bench_maskrcnn(
    project: Project,
    plan: MaskRCNNPlan,
    pseudo_coco: Path | None = None,
    workers: int | None = None,
) -> dict[str, Any]:
    """Train and score ``full`` (and ``weak`` when ``pseudo_coco`` is given); return the report section."""
    section: dict[str, Any] = {"plan": _plan_dict(plan)}
    sources = {"full": project.root / GROUND_TRUTH}
    if pseudo_coco is not None:
        sources["weak"] = Path(pseudo_coco)
    section.update(train_and_score(project, sources, plan, workers))
    if "weak" in section and section["full"]["map50"] > 0:
        section["weak_over_full_map50"] = section["weak"]["map50"] / section["full"]["map50"]
    if plan.model.weights is not None and plan.model.frozen_bn is None:
        section["batchnorm"] = batchnorm_ablation(project, plan, section["full"], workers)
    return section


def batchnorm_ablation(
    project: Project, plan: MaskRCNNPlan, frozen: dict[str, Any], workers: int | None = None
) -> dict[str, Any]:
    """The upper bound again with the pretrained backbone's BatchNorm trainable (``frozen_bn=False``),
    against ``frozen``, the same training with it frozen (the default from pretrained weights)."""
    trainable_plan = replace(plan, model=replace(plan.model, frozen_bn=False))
    trainable = train_and_score(
        project, {"full-trainable-bn": project.root / GROUND_TRUTH}, trainable_plan, workers
    )["full-trainable-bn"]
    return {
        "frozen": {k: frozen[k] for k in KEYS},
        "trainable": {k: trainable[k] for k in KEYS},
        "trainable_seconds": trainable["train_seconds"],
    }


def train_and_score(
    project: Project, sources: dict[str, Path], plan: MaskRCNNPlan, workers: int | None = None
) -> dict[str, dict[str, Any]]:
    """One Mask R-CNN per COCO file of ``sources`` (key -> file, checkpoint ``maskrcnn-<key>``), same
    plan and seed, each scored on the validation split. Returns key -> the metrics of ``KEYS``,
    ``per_class_map50``, ``train_images``, ``train_seconds`` (of all trainings together) and
    ``eval_seconds``.

    The trainings are independent, so they run at once in ``workers`` processes (default: one per
    core, at most one per training), the cores shared out as torch threads. On a CPU this beats one
    training after the other on all cores: a Mask R-CNN step is many small operations, and a second
    thread speeds each one up far less than twice.
    """
    workers = min(len(sources), default_workers() if workers is None else max(1, workers))
    threads = max(1, torch.get_num_threads() // workers) if workers > 1 else torch.get_num_threads()
    tasks = [
        (project.root, coco, plan, f"maskrcnn-{key}", position, threads, key.startswith("full"))
        for position, (key, coco) in enumerate(sources.items())
    ]
    started = time.perf_counter()
    for _ in map_in_order(_train, tasks, workers):
        pass
    trained = time.perf_counter() - started
    runs = {run.config.get("name"): run for run in reversed(project.runs("maskrcnn"))}  # newest wins
    out: dict[str, dict[str, Any]] = {}
    for key in sources:
        t = time.perf_counter()
        metrics = evaluate_maskrcnn(project, f"maskrcnn-{key}", split="val")
        out[key] = {k: metrics[k] for k in KEYS}
        out[key].update(
            per_class_map50=metrics["per_class_map50"],
            train_images=runs[f"maskrcnn-{key}"].config.get("images"),
            train_seconds=trained,
            eval_seconds=time.perf_counter() - t,
        )
        history = load_checkpoint(project.root / "checkpoints" / f"maskrcnn-{key}" / CHECKPOINT)["history"]
        if any("val_map50" in epoch for epoch in history):
            out[key]["val_map50_curve"] = [epoch.get("val_map50") for epoch in history]
    return out


def _train(task: tuple[Path, Path, MaskRCNNPlan, str, int, int, bool]) -> None:
    """One training of ``bench_maskrcnn`` (in a worker process, or in this one); with ``curve`` its
    mAP50 on the validation split after every epoch (the upper bound's curve: did it stop rising?)."""
    root, coco, plan, name, position, threads, curve = task
    torch.set_num_threads(threads)
    project = Project(root)

    def validate(model: torch.nn.Module) -> dict[str, float]:
        return {"map50": evaluate_split(project, partial(predict, model), "val")[0]["map50"]}

    train_maskrcnn(
        project,
        coco,
        plan.model,
        plan.train,
        name=name,
        augment=plan.augment,
        callback=tqdm_callback(name, position=position),
        max_images=plan.max_images,
        init=plan.init,
        validate=validate if curve else None,
    )


def _plan_dict(plan: MaskRCNNPlan) -> dict[str, Any]:
    return {
        "model": plan.model.as_dict(),
        "train": asdict(plan.train),
        "augment": asdict(plan.augment),
        "max_images": plan.max_images,
        "init": plan.init,
    }
