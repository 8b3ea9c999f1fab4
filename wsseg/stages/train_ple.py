"""Stage: train the pixel-label estimator (tags only) or the same network on pixel labels (``--full``).

``--labels-from RUN`` is the estimator's second round (self-training, still tags only): the network
trains with pixel cross-entropy on RUN's tag-masked, CRF-refined predictions of the training images.

Writes ``checkpoints/<name>/last.pt`` (class names, labels, model and estimator configs inside) and
``checkpoints/<name>/config.json``, and records a ``ple`` run in the project database. The fully supervised
baseline needs pixel labels: they come from the project's ground-truth instances (``ground_truth.json``).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from wsseg.errors import BadInputError
from wsseg.methods.crf import CRFConfig
from wsseg.methods.ple import IGNORE, PLEConfig, full_losses, weak_losses
from wsseg.models.normalise import to_tensor
from wsseg.models.segmenter import Segmenter, SegmenterConfig
from wsseg.stages.common import (
    check_new_run,
    ended,
    image_progress,
    init_backbone,
    train_config_from_args,
    training_callback,
)
from wsseg.stages.evaluate_ple import LABEL_MAPS, evaluate_ple, load_ple, self_training_labels
from wsseg.stages.train_classifier import parse_augment
from wsseg.store.instances import semantic_truth
from wsseg.store.project import Project
from wsseg.training.datasets import (
    Augment,
    augment_image,
    check_tagged_arrays,
    load_readable_images,
    multi_hot,
)
from wsseg.training.engine import (
    CHECKPOINT,
    Progress,
    TrainConfig,
    setup_distributed,
    train,
)

STAGE = "ple"
BACKGROUND = "background"


class SegmentationImages(Dataset):
    """Images with tags and (optionally) pixel labels.

    images: NxHxWx3 uint8. targets: NxC {0, 1} tags. labels: NxHxW uint8 label maps (0..K-1, ``IGNORE``)
    or None (weak training: the item then carries an all-``IGNORE`` map). Item: ``(3xHxW float32
    normalised, C float32 tags, HxW int64 labels)``; ``augment`` moves image and labels together.
    """

    def __init__(
        self,
        images: np.ndarray,
        targets: np.ndarray,
        classes: Sequence[str],
        labels: np.ndarray | None = None,
        augment: Augment | None = None,
    ) -> None:
        check_tagged_arrays(images, targets, classes)
        if labels is not None and labels.shape != images.shape[:3]:
            raise BadInputError("labels", f"expected shape {images.shape[:3]}, got {labels.shape}")
        self.images, self.labels, self.augment = images, labels, augment
        self.targets = targets.astype(np.float32)
        self.classes = tuple(classes)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        image = self.images[index]
        labels = self.labels[index] if self.labels is not None else np.full(image.shape[:2], IGNORE, np.uint8)
        if self.augment is not None:
            # Drawn from torch's generator, which the engine reseeds each epoch: reproducible on resume.
            seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
            image = augment_image(image, self.augment, np.random.default_rng(seed))
            geometric = dataclasses.replace(self.augment, colour=False)
            labels = augment_image(labels, geometric, np.random.default_rng(seed))
        return (
            to_tensor(image),
            torch.from_numpy(self.targets[index]),
            torch.from_numpy(labels.astype(np.int64)),
        )


def label_names(classes: Sequence[str], background: bool) -> list[str]:
    """The network's output labels: ``background`` first when the data has one, then the classes."""
    return [BACKGROUND, *classes] if background else list(classes)


def project_dataset(
    project: Project,
    full: bool,
    background: bool,
    size: int | None,
    augment: Augment | None,
    limit: int | None = None,
) -> SegmentationImages:
    """The project's training split (its first ``limit`` images; None: all) as a ``SegmentationImages``
    (with pixel labels when ``full``)."""
    records = project.images(split="train", limit=limit)
    if not records:
        raise BadInputError(str(project.root), "has no images in split 'train'; import some first")
    classes = project.classes()
    images, records = load_readable_images(project, records, size)
    labels = None
    if full:
        maps = semantic_truth(project, records, background)
        if any(m is None for m in maps):
            raise BadInputError(
                str(project.root), "--full needs pixel labels for every training image (ground truth masks)"
            )
        labels = np.stack(
            [
                m if size is None else cv2.resize(m, (size, size), interpolation=cv2.INTER_NEAREST)
                for m in maps
            ]
        )
    return SegmentationImages(images, multi_hot([r.tags for r in records], classes), classes, labels, augment)


def with_self_training_labels(
    project: Project, data: SegmentationImages, source: str, background: bool, confidence: float
) -> SegmentationImages:
    """``data`` with its pixel labels replaced by those the trained network ``checkpoints/<source>`` (the
    estimator, or an earlier self-training round) gives its images and tags
    (``wsseg.stages.evaluate_ple.self_training_labels``, dense CRF on)."""
    model, extra = load_ple(project, source)
    expected = label_names(data.classes, background)
    if extra["labels"] != expected or extra.get("full"):
        raise BadInputError(
            f"--labels-from {source}",
            f"expected a network trained on tags with labels {expected}; it has {extra['labels']}"
            f"{' and was trained on ground-truth pixel labels' if extra.get('full') else ''}",
        )
    labels = self_training_labels(model, data.images, data.targets, background, CRFConfig(), confidence)
    return SegmentationImages(data.images, data.targets, data.classes, labels, data.augment)


def make_loss(ple: PLEConfig, full: bool) -> Callable[[torch.nn.Module, Any], dict[str, torch.Tensor]]:
    """``loss_fn(model, batch)`` for the engine: the estimator's losses, or pixel cross-entropy."""

    def loss_fn(model: torch.nn.Module, batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        images, tags, labels = batch
        logits = model(images, ple.loss_scale)
        return full_losses(logits, labels) if full else weak_losses(logits, images, tags, ple)

    return loss_fn


def train_ple(
    project: Project,
    model_config: SegmenterConfig,
    ple_config: PLEConfig,
    train_config: TrainConfig,
    name: str = "ple",
    full: bool = False,
    size: int | None = None,
    augment: Augment | None = Augment(flips=True, hflip=False, colour=False),  # noqa: B008 (frozen)
    resume: bool = False,
    callback: Callable[[Progress], bool | None] | None = None,
    dataset: SegmentationImages | None = None,
    init: str | None = None,
    labels_from: str | None = None,
    confidence: float = 0.0,
    validate: Callable[[torch.nn.Module], dict[str, float]] | None = None,
) -> dict[str, Any]:
    """Train on the project's training split (or ``dataset``); return the run's metrics. ``validate``:
    the engine's per-epoch validation (``wsseg.training.engine.train``).

    ``init``: name of a trained classifier (``checkpoints/<init>/``) whose backbone starts the network (the
    paper starts from a pretrained network; here the classifier trained on the same tags stands in).
    ``labels_from``: name of a trained estimator whose refined predictions (pixels below ``confidence``
    ignored) are the pixel labels of this second round; any pixel labels of ``dataset`` are not used."""
    info = setup_distributed()
    if labels_from is not None and full:
        raise BadInputError("--labels-from", "trains on the estimator's own labels; it cannot go with --full")
    data = dataset or project_dataset(project, full, ple_config.background, size, augment)
    if labels_from is not None:
        data = with_self_training_labels(project, data, labels_from, ple_config.background, confidence)
    labels = label_names(data.classes, ple_config.background)
    if model_config.num_labels != len(labels):
        raise BadInputError("num_labels", f"{model_config.num_labels} != {len(labels)} labels ({labels})")
    if (full or labels_from) and data.labels is None:
        raise BadInputError("dataset", "the supervised baseline needs pixel labels")
    folder = project.root / "checkpoints" / name
    if resume and not (folder / CHECKPOINT).exists():
        raise BadInputError(str(folder / CHECKPOINT), "nothing to resume; start without --resume")
    extra = {
        "classes": list(data.classes),
        "labels": labels,
        "model": dataclasses.asdict(model_config),
        "ple": dataclasses.asdict(ple_config),
        "full": full,
        "size": size,
        "init": init,
        "labels_from": labels_from,
        "confidence": confidence if labels_from else None,
    }
    config = {"name": name, **extra, "train": dataclasses.asdict(train_config)}
    artifacts = str(folder.relative_to(project.root))
    run_id = project.start_run(STAGE, config, artifacts=artifacts) if info.is_main else 0
    model = Segmenter(model_config)
    if init is not None:
        init_backbone(model, project.root / "checkpoints" / init / CHECKPOINT)
    try:
        result = train(
            model,
            data,
            make_loss(ple_config, full or labels_from is not None),
            train_config,
            folder,
            callback,
            resume,
            extra,
            validate=validate,
        )
    except BaseException as error:
        if info.is_main:
            project.finish_run(run_id, ended(error))
        raise
    metrics: dict[str, Any] = {"epochs_done": len(result.history)}
    if result.history:
        metrics["final_losses"] = result.history[-1]
    if info.is_main:
        project.finish_run(run_id, "stopped" if result.stopped else "done", metrics)
    return metrics


def run_from_args(args: argparse.Namespace) -> None:
    project = Project(args.project)
    classes = project.classes()
    if not classes:
        raise BadInputError(str(args.project), "has no classes; import tagged images first")
    check_new_run(project, args.name, args.replace, args.resume)
    background = not args.no_background
    ple_config = PLEConfig(
        background=background,
        neighbourhood_weight=args.neighbourhood_weight,
        classification_weight=args.classification_weight,
        share=args.share,
    )
    model_config = SegmenterConfig(
        num_labels=len(label_names(classes, background)), backbone=args.backbone, weights=args.weights
    )
    train_config = train_config_from_args(args)
    metrics = train_ple(
        project,
        model_config,
        ple_config,
        train_config,
        name=args.name,
        full=args.full,
        size=args.size,
        augment=parse_augment(args.augment),
        resume=args.resume,
        callback=training_callback(args, STAGE, "train-ple"),
        init=args.init,
        labels_from=args.labels_from,
        confidence=args.confidence,
    )
    if not setup_distributed().is_main:
        return
    print(f"pixel-label estimator trained: {project.root / 'checkpoints' / args.name} ({metrics})")
    if args.predict:
        crf = CRFConfig() if args.crf else None
        with image_progress(args, "label maps") as progress:
            result = evaluate_ple(project, args.name, split=None, crf=crf, progress=progress)
        folder = project.artifacts(LABEL_MAPS, result["run_id"])
        shown = (
            f", mIoU {result['miou']:.4f} over all {result['scored_images']} images"
            if "miou" in result
            else ""
        )
        print(f"label maps written: {folder}{shown}")
