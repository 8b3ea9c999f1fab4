"""Stage: train Mask R-CNN on instance masks of a project (pseudo masks, or the true ones).

The masks come from a COCO instance JSON: ``--coco FILE`` (for example the pseudo-mask stage's
export), ``--source truth`` (the project's ``ground_truth.json``: the fully-supervised upper bound,
same data, same schedule, same evaluation) or ``--source pseudo`` (the newest finished pseudo-masks
run's masks that are not rejected, curated edits included, exported to
``artifacts/maskrcnn/<name>/pseudo.json``; the run's id is kept in the config as ``pseudo_masks_run``).
Only the images of the training split are used. Writes ``checkpoints/<name>/last.pt`` and
``config.json`` and records a ``maskrcnn`` run.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torchvision.models.detection import MaskRCNN

from wsseg.data.coco import coco_dict
from wsseg.errors import BadInputError
from wsseg.fileio import write_json
from wsseg.models.maskrcnn import MaskRCNNConfig, build_maskrcnn
from wsseg.stages.common import (
    check_new_run,
    checkpoint_state,
    ended,
    init_backbone,
    train_config_from_args,
    training_callback,
)
from wsseg.stages.make_pseudo_masks import STAGE as PSEUDO_STAGE
from wsseg.stages.make_pseudo_masks import export_coco
from wsseg.stages.train_classifier import parse_augment
from wsseg.store.importer import GROUND_TRUTH
from wsseg.store.project import Project
from wsseg.training.datasets import Augment
from wsseg.training.engine import (
    CHECKPOINT,
    Progress,
    TrainConfig,
    setup_distributed,
    train,
)
from wsseg.training.instance_data import InstanceImages, collate

STAGE = "maskrcnn"
SOURCES = ("truth", "pseudo")


def maskrcnn_loss(model: torch.nn.Module, batch: tuple[list, list]) -> dict[str, torch.Tensor]:
    """torchvision's five losses (RPN objectness and box, RoI class, box and mask), by name."""
    images, targets = batch
    return model(images, targets)


def export_pseudo_masks(project: Project, path: Path) -> Path:
    """Write the project's stored pseudo masks that are not rejected as a COCO JSON; return ``path``."""
    classes = project.classes()
    masks = [m for m in project.pseudo_masks() if m["status"] != "rejected"]
    if not masks:
        raise BadInputError(str(project.root), "has no pseudo masks; run the pseudo-mask stage first")
    image_ids = sorted({m["image_id"] for m in masks})
    records = [project.image(i) for i in image_ids]
    annotations = [
        {
            "id": k + 1,
            "image_id": m["image_id"],
            "category_id": classes.index(m["class_name"]) + 1,
            "segmentation": m["rle"],
            "iscrowd": 0,
        }
        for k, m in enumerate(masks)
    ]
    images = [{"id": r.id, "file_name": r.filename, "width": r.width, "height": r.height} for r in records]
    write_json(path, coco_dict(images, classes, annotations))
    return path


def training_coco(
    project: Project, name: str, coco: Path | None, source: str | None
) -> tuple[Path, int | None]:
    """The COCO file to train on: ``coco`` when given, else the one ``source`` names; and the
    pseudo-masks run it holds (``source`` pseudo: the newest finished one; None for the others, and
    for pseudo masks stored without a run)."""
    if coco is not None:
        if source is not None:
            raise BadInputError("--coco", "give either --coco or --source, not both")
        return Path(coco), None
    if source == "truth":
        path = project.root / GROUND_TRUTH
        if not path.is_file():
            raise BadInputError(str(project.root), "has no ground truth (ground_truth.json) to train on")
        return path, None
    if source == "pseudo":
        path = project.root / "artifacts" / STAGE / name / "pseudo.json"
        run = project.latest_run(PSEUDO_STAGE)
        if run is None:
            return export_pseudo_masks(project, path), None
        if not export_coco(project, run.id, path)["annotations"]:
            raise BadInputError(f"pseudo-masks run {run.id}", "has no masks (all rejected, or none found)")
        return path, run.id
    raise BadInputError("--source", f"expected one of {', '.join(SOURCES)} (or give --coco), got {source!r}")


def train_maskrcnn(
    project: Project,
    coco_path: str | Path,
    model_config: MaskRCNNConfig,
    train_config: TrainConfig,
    name: str = "maskrcnn",
    augment: Augment | None = Augment(flips=True, hflip=False, colour=False),  # noqa: B008 (frozen)
    resume: bool = False,
    callback: Callable[[Progress], bool | None] | None = None,
    split: str | None = "train",
    max_images: int | None = None,
    init: str | None = None,
    pseudo_masks_run: int | None = None,
    validate: Callable[[torch.nn.Module], dict[str, float]] | None = None,
) -> dict[str, Any]:
    """Train on the ``split`` images listed in ``coco_path`` (the first ``max_images`` of them when
    given); return the run's metrics. ``validate``: the engine's per-epoch validation
    (``wsseg.training.engine.train``).

    ``init``: name of a trained classifier (``checkpoints/<init>/``) whose layers start the ``small``
    backbone (its width must match). The classifier learnt them from the tags alone, so a weak run stays
    weak; the fully-supervised bound gets the same start, so the two still differ only in their masks.
    ``pseudo_masks_run``: the pseudo-masks run ``coco_path`` was exported from, kept in the config.
    """
    info = setup_distributed()
    data = InstanceImages.from_coco(project, coco_path, split, augment, max_images)
    if 0 < len(data) < train_config.batch_size * info.world_size:
        # Which images get pseudo masks is only known now: a batch larger than them would train nothing.
        batch = max(1, len(data) // info.world_size)
        print(f"{len(data)} training image(s) with masks: batch size {train_config.batch_size} -> {batch}")
        train_config = dataclasses.replace(train_config, batch_size=batch)
    if model_config.num_classes != len(data.classes):
        raise BadInputError(
            "num_classes", f"{model_config.num_classes} != {len(data.classes)} classes in the project"
        )
    folder = project.root / "checkpoints" / name
    if resume and not (folder / CHECKPOINT).exists():
        raise BadInputError(str(folder / CHECKPOINT), "nothing to resume; start without --resume")
    torch.manual_seed(train_config.seed)
    model = build_maskrcnn(model_config)
    if init is not None and not resume:
        if model_config.backbone != "small":
            raise BadInputError(
                f"--init {init}", f"starts the small backbone only, not {model_config.backbone!r}"
            )
        init_backbone(
            model, project.root / "checkpoints" / init / CHECKPOINT, "backbone.body.", complete=False
        )
    config = {
        "name": name,
        "init": init,
        "coco": str(coco_path),
        "pseudo_masks_run": pseudo_masks_run,
        "images": len(data),
        "model": model_config.as_dict(),
        "train": dataclasses.asdict(train_config),
        "augment": None if augment is None else dataclasses.asdict(augment),
    }
    run_id = project.start_run(STAGE, config, str(folder.relative_to(project.root))) if info.is_main else 0
    try:
        result = train(
            model,
            data,
            maskrcnn_loss,
            train_config,
            folder,
            callback=callback,
            resume=resume,
            extra_state={
                "classes": data.classes,
                "model": model_config.as_dict(),
                "coco": str(coco_path),
                "init": init,
            },
            collate_fn=collate,
            validate=validate,
        )
    except BaseException as error:
        if info.is_main:
            project.finish_run(run_id, ended(error))
        raise
    last = {
        k: v for k, v in (result.history[-1] if result.history else {}).items() if not k.startswith("val_")
    }
    metrics = {"final_loss": sum(last.values()) if last else float("nan"), "epochs_done": len(result.history)}
    metrics.update({f"final_{k}": v for k, v in last.items()})
    if info.is_main:
        project.finish_run(run_id, "stopped" if result.stopped else "done", metrics)
    return metrics


def classifier_width(project: Project, name: str) -> int:
    """The ``small_width`` of the trained classifier ``name``, for a Mask R-CNN that starts from it."""
    path, state = checkpoint_state(project, name)
    model = state.get("extra", {}).get("model", {})
    if "peaks" not in model:  # what a classifier's config has and a Mask R-CNN's or an estimator's has not
        raise BadInputError(str(path), "is not a classifier checkpoint (train-classifier)")
    if model.get("backbone") != "small":
        raise BadInputError(
            str(path), f"has the {model.get('backbone')} backbone; --init starts the small one"
        )
    return int(model.get("small_width", MaskRCNNConfig.small_width))


def load_maskrcnn(
    project_or_folder: Project | Path, name: str = "maskrcnn", device: str | torch.device = "cpu"
) -> tuple[MaskRCNN, list[str], dict[str, Any]]:
    """The trained model (eval mode), its class names, and the checkpoint's extra state."""
    path, state = checkpoint_state(project_or_folder, name, device)
    extra = state["extra"]
    if "model" not in extra or "anchor_sizes" not in extra["model"]:
        raise BadInputError(str(path), "is not a Mask R-CNN checkpoint")
    model = build_maskrcnn(MaskRCNNConfig.from_dict(extra["model"]))
    model.load_state_dict(state["model"])
    model.to(device).eval()
    return model, list(extra["classes"]), extra


def run_from_args(args: argparse.Namespace) -> None:
    project = Project(args.project)
    classes = project.classes()
    if not classes:
        raise BadInputError(str(args.project), "has no classes; import tagged images first")
    check_new_run(project, args.name, args.replace, args.resume)
    coco, pseudo_run = training_coco(project, args.name, args.coco, args.source)
    backbone, width = args.backbone or "mobilenet_v3", MaskRCNNConfig.small_width
    if args.init is not None:
        backbone, width = args.backbone or "small", classifier_width(project, args.init)
    model_config = MaskRCNNConfig(
        num_classes=len(classes),
        backbone=backbone,
        weights=args.weights,
        image_size=args.image_size,
        small_width=width,
    )
    train_config = train_config_from_args(args)
    metrics = train_maskrcnn(
        project,
        coco,
        model_config,
        train_config,
        name=args.name,
        augment=parse_augment(args.augment),
        resume=args.resume,
        callback=training_callback(args, STAGE, "train-maskrcnn"),
        init=args.init,
        pseudo_masks_run=pseudo_run,
    )
    if setup_distributed().is_main:
        print(f"Mask R-CNN trained on {coco}: {project.root / 'checkpoints' / args.name} ({metrics})")
