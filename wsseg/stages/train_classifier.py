"""Stage: train the classifier with class response maps on a project's tags.

Writes ``checkpoints/<name>/last.pt`` (with the class names and model config inside) and
``checkpoints/<name>/config.json``, and records a ``classifier`` run in the project database.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wsseg.errors import BadInputError
from wsseg.models.classifier import ClassifierConfig, PeakClassifier
from wsseg.models.peaks import PeakConfig
from wsseg.stages.classifier_summary import SUMMARY_IMAGES, summarise_classifier, summary_lines
from wsseg.stages.common import (
    check_new_run,
    checkpoint_state,
    ended,
    train_config_from_args,
    training_callback,
)
from wsseg.store.project import Project
from wsseg.training.datasets import Augment, TaggedImages
from wsseg.training.engine import (
    CHECKPOINT,
    Progress,
    TrainConfig,
    setup_distributed,
    train,
)

STAGE = "classifier"


def config_to_dict(config: ClassifierConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def config_from_dict(data: dict[str, Any]) -> ClassifierConfig:
    data = dict(data)
    data["peaks"] = PeakConfig(**data.get("peaks", {}))
    if "small_dilations" in data:  # JSON has lists
        data["small_dilations"] = tuple(data["small_dilations"])
    return ClassifierConfig(**data)


def classifier_loss(
    model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
) -> dict[str, torch.Tensor]:
    images, targets = batch
    outputs = model(images)
    core = model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
    return core.loss(outputs, targets)


def train_classifier(
    project: Project,
    model_config: ClassifierConfig,
    train_config: TrainConfig,
    name: str = "classifier",
    size: int | None = None,
    augment: Augment | None = Augment(flips=True, hflip=False, colour=False),  # noqa: B008 (frozen)
    resume: bool = False,
    callback: Callable[[Progress], bool | None] | None = None,
    dataset: TaggedImages | None = None,
) -> dict[str, Any]:
    """Train on the project's training split (or on ``dataset`` when given); return the run's metrics."""
    info = setup_distributed()
    data = dataset or TaggedImages.from_project(project, size=size, augment=augment)
    if model_config.num_classes != len(data.classes):
        raise BadInputError(
            "num_classes", f"{model_config.num_classes} != {len(data.classes)} classes in the data"
        )
    model = PeakClassifier(model_config)
    folder = project.root / "checkpoints" / name
    if resume and not (folder / CHECKPOINT).exists():
        raise BadInputError(str(folder / CHECKPOINT), "nothing to resume; start without --resume")
    config = {"name": name, "model": config_to_dict(model_config), "train": dataclasses.asdict(train_config)}
    run_id = (
        project.start_run(STAGE, config, artifacts=str(folder.relative_to(project.root)))
        if info.is_main
        else 0
    )
    try:
        result = train(
            model,
            data,
            classifier_loss,
            train_config,
            folder,
            callback=callback,
            resume=resume,
            extra_state={"classes": list(data.classes), "model": config_to_dict(model_config), "size": size},
        )
    except BaseException as error:
        if info.is_main:
            project.finish_run(run_id, ended(error))
        raise
    metrics = {"final_loss": result.history[-1]["classification"] if result.history else float("nan")}
    metrics["epochs_done"] = len(result.history)
    if info.is_main and not result.stopped:
        metrics["class_summary"] = summarise_classifier(model, *_summary_images(project, data, size, dataset))
    if info.is_main:
        project.finish_run(run_id, "stopped" if result.stopped else "done", metrics)
    return metrics


def _summary_images(
    project: Project, data: TaggedImages, size: int | None, given: TaggedImages | None
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], str]:
    """(images, targets, classes, split in words) the per-class summary scores: the project's
    validation split when it has one (and the data was not given), else the training images (as
    stored, without augmentation); at most ``SUMMARY_IMAGES``."""
    if given is None and project.count_images(split="val"):
        data = TaggedImages.from_project(project, size=size, split="val")
        split = "validation"
    else:
        split = "training"
    n = SUMMARY_IMAGES
    return data.images[:n], data.targets[:n], data.classes, split


def load_classifier(
    project_or_folder: Project | Path, name: str = "classifier", device: str | torch.device = "cpu"
) -> tuple[PeakClassifier, list[str], dict[str, Any]]:
    """The trained model (eval mode), its class names, and the checkpoint's extra state."""
    _, state = checkpoint_state(project_or_folder, name, device)
    extra = state["extra"]
    model = PeakClassifier(config_from_dict(extra["model"]))
    model.load_state_dict(state["model"])
    model.to(device).eval()
    return model, list(extra["classes"]), extra


def parse_augment(text: str) -> Augment | None:
    """'flips,colour' -> Augment(flips=True, hflip=False, colour=True); 'none' -> None."""
    names = {part.strip() for part in text.split(",") if part.strip()}
    known = {"flips", "hflip", "colour", "none"}
    if not names or names - known:
        raise BadInputError(
            "--augment", f"expected a comma-separated subset of {sorted(known)}, got {text!r}"
        )
    if names == {"none"}:
        return None
    return Augment(flips="flips" in names, hflip="hflip" in names, colour="colour" in names)


def parse_dilations(text: str) -> tuple[int, ...]:
    """'2,3' -> (2, 3); '' or 'none' -> () (receptive field 41 px)."""
    if text.strip().lower() in ("", "none"):
        return ()
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        values = ()
    if not values or any(v < 1 for v in values):
        raise BadInputError(
            "--dilations", f"expected comma-separated positive integers such as 1 or 2,3, got {text!r}"
        )
    return values


def run_from_args(args: argparse.Namespace) -> None:
    project = Project(args.project)
    classes = project.classes()
    if not classes:
        raise BadInputError(str(args.project), "has no classes; import tagged images first")
    check_new_run(project, args.name, args.replace, args.resume)
    if args.frozen_backbone and args.weights is None:
        raise BadInputError("--frozen-backbone", "needs --weights: a random backbone would stay random")
    model_config = ClassifierConfig(
        num_classes=len(classes),
        backbone=args.backbone,
        weights=args.weights,
        peak_stimulation=args.pooling == "peaks",
        small_dilations=parse_dilations(args.dilations),
        frozen_backbone=args.frozen_backbone,
    )
    train_config = train_config_from_args(args)
    metrics = train_classifier(
        project,
        model_config,
        train_config,
        name=args.name,
        size=args.size,
        resume=args.resume,
        augment=parse_augment(args.augment),
        callback=training_callback(args, STAGE, "train-classifier"),
    )
    if setup_distributed().is_main:
        shown = {k: v for k, v in metrics.items() if k != "class_summary"}
        print(f"classifier trained: {project.root / 'checkpoints' / args.name} ({shown})")
        if "class_summary" in metrics:
            print("\n".join(summary_lines(metrics["class_summary"])))
