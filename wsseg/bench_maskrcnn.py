"""Benchmark of the Mask R-CNN stage: the same model and schedule trained on the true masks (``full``, the
upper bound) and on pseudo masks (``weak``), both scored on the validation split.

Keys: ``full.{map25,map50,map75,pointing_accuracy,count_mae}``, ``weak.*`` when a pseudo-mask COCO
file is given, and ``weak_over_full_map50``. Everything goes through the command line's functions
(``train_maskrcnn``, ``evaluate_maskrcnn``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from wsseg.datasets import Augment
from wsseg.engine import Progress, TrainConfig, tqdm_callback
from wsseg.importer import GROUND_TRUTH
from wsseg.maskrcnn import MaskRCNNConfig
from wsseg.stages.evaluate import evaluate_maskrcnn
from wsseg.stages.train_maskrcnn import train_maskrcnn
from wsseg.store import Project

KEYS = ("map25", "map50", "map75", "pointing_accuracy", "count_mae")


@dataclass(frozen=True)
class MaskRCNNPlan:
    """Model, schedule and data of both trainings. ``max_images``: the first N training images only."""

    model: MaskRCNNConfig
    train: TrainConfig
    augment: Augment = Augment(flips=True, hflip=False, colour=True)
    max_images: int | None = None


def maskrcnn_plan(quick: bool, num_classes: int, seed: int) -> MaskRCNNPlan:
    """The benchmark's recipe (docs/benchmark.md): about 25 minutes per training on 2 CPU cores in the
    full run, a few minutes with ``quick``. AdamW at a one-cycle peak of 2e-3, batch 8."""
    model = MaskRCNNConfig(num_classes=num_classes)
    if quick:
        return MaskRCNNPlan(model, TrainConfig(epochs=3, batch_size=8, lr=2e-3, seed=seed), max_images=100)
    return MaskRCNNPlan(model, TrainConfig(epochs=5, batch_size=8, lr=2e-3, seed=seed), max_images=2000)


def bench_maskrcnn(
    project: Project,
    plan: MaskRCNNPlan,
    pseudo_coco: Path | None = None,
    callback: Callable[[str], Callable[[Progress], Any]] = tqdm_callback,
) -> dict[str, Any]:
    """Train and score ``full`` (and ``weak`` when ``pseudo_coco`` is given); return the report section."""
    section: dict[str, Any] = {"plan": _plan_dict(plan)}
    sources = {"full": project.root / GROUND_TRUTH}
    if pseudo_coco is not None:
        sources["weak"] = Path(pseudo_coco)
    for key, coco in sources.items():
        name = f"maskrcnn-{key}"
        train_maskrcnn(
            project,
            coco,
            plan.model,
            plan.train,
            name=name,
            augment=plan.augment,
            callback=callback(name),
            max_images=plan.max_images,
        )
        metrics = evaluate_maskrcnn(project, name, split="val")
        section[key] = {k: metrics[k] for k in KEYS}
        section[key]["per_class_map50"] = metrics["per_class_map50"]
    if "weak" in section and section["full"]["map50"] > 0:
        section["weak_over_full_map50"] = section["weak"]["map50"] / section["full"]["map50"]
    return section


def _plan_dict(plan: MaskRCNNPlan) -> dict[str, Any]:
    return {
        "model": plan.model.as_dict(),
        "train": asdict(plan.train),
        "augment": asdict(plan.augment),
        "max_images": plan.max_images,
    }
