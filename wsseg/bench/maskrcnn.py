"""Benchmark of the Mask R-CNN stage: the same model and schedule trained on the true masks (``full``, the
upper bound) and on pseudo masks (``weak``), both scored on the validation split.

Keys: ``full.{map25,map50,map75,pointing_accuracy,count_mae}``, ``weak.*`` when a pseudo-mask COCO
file is given, and ``weak_over_full_map50``. Everything goes through the command line's functions
(``train_maskrcnn``, ``evaluate_maskrcnn``).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from wsseg.errors import BadInputError
from wsseg.models.maskrcnn import MaskRCNNConfig
from wsseg.stages.evaluate import evaluate_maskrcnn
from wsseg.stages.pool import default_workers, map_in_order
from wsseg.stages.train_maskrcnn import classifier_width, train_maskrcnn
from wsseg.store.importer import GROUND_TRUTH
from wsseg.store.project import Project
from wsseg.training.datasets import Augment
from wsseg.training.engine import CHECKPOINT, TrainConfig, tqdm_callback

KEYS = ("map25", "map50", "map75", "pointing_accuracy", "count_mae")


@dataclass(frozen=True)
class MaskRCNNPlan:
    """Model, schedule and data of both trainings. ``max_images``: the first N training images only.
    ``init``: the classifier whose layers start both (``train_maskrcnn``'s ``init``), or None."""

    model: MaskRCNNConfig
    train: TrainConfig
    augment: Augment = Augment(flips=True, hflip=False, colour=True)
    max_images: int | None = None
    init: str | None = None


def classifier_start(project: Project, name: str = "classifier") -> tuple[str | None, int]:
    """(name, width) of the project's trained classifier ``name`` when a Mask R-CNN can start from it
    (it has the small backbone), else (None, the default width): the ``init`` and ``width`` of the
    benchmark's plans."""
    if not (project.root / "checkpoints" / name / CHECKPOINT).exists():
        return None, MaskRCNNConfig.small_width
    try:
        return name, classifier_width(project, name)
    except BadInputError:  # not a small-backbone classifier
        return None, MaskRCNNConfig.small_width


def start_config(num_classes: int, init: str | None, width: int) -> MaskRCNNConfig:
    """The benchmark's model: with ``init``, the small backbone at the classifier's width with RoIAlign
    at one sample per bin (its backward was a quarter of a CPU step); without, the default
    MobileNetV3-FPN from scratch."""
    if init is None:
        return MaskRCNNConfig(num_classes=num_classes)
    return MaskRCNNConfig(num_classes=num_classes, backbone="small", small_width=width, roi_sampling_ratio=1)


def maskrcnn_plan(
    quick: bool,
    num_classes: int,
    seed: int,
    init: str | None = None,
    width: int = MaskRCNNConfig.small_width,
    epochs: int | None = None,
) -> MaskRCNNPlan:
    """The benchmark's recipe (docs/benchmark.md). With ``init`` (the benchmark's classifier, of
    ``small_width`` ``width``): the small backbone started from it, RoIAlign at one sample per bin, 1,500
    images x 3 epochs (561 steps), both trainings at once on one core each. Without: MobileNetV3 from
    scratch, 6 epochs. ``epochs`` replaces either (not ``quick``'s 2). A few minutes with ``quick``.
    AdamW at a one-cycle peak of 2e-3, batch 8."""
    model = start_config(num_classes, init, width)
    if epochs is None:
        epochs = 3 if init is not None else 6
    if quick:
        return MaskRCNNPlan(
            model, TrainConfig(epochs=2, batch_size=8, lr=2e-3, seed=seed), max_images=64, init=init
        )
    return MaskRCNNPlan(
        model, TrainConfig(epochs=epochs, batch_size=8, lr=2e-3, seed=seed), max_images=1500, init=init
    )


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
    return section


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
        (project.root, coco, plan, f"maskrcnn-{key}", position, threads)
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
    return out


def _train(task: tuple[Path, Path, MaskRCNNPlan, str, int, int]) -> None:
    """One training of ``bench_maskrcnn`` (in a worker process, or in this one)."""
    root, coco, plan, name, position, threads = task
    torch.set_num_threads(threads)
    train_maskrcnn(
        Project(root),
        coco,
        plan.model,
        plan.train,
        name=name,
        augment=plan.augment,
        callback=tqdm_callback(name, position=position),
        max_images=plan.max_images,
        init=plan.init,
    )


def _plan_dict(plan: MaskRCNNPlan) -> dict[str, Any]:
    return {
        "model": plan.model.as_dict(),
        "train": asdict(plan.train),
        "augment": asdict(plan.augment),
        "max_images": plan.max_images,
        "init": plan.init,
    }
