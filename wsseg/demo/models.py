"""The demo Mask R-CNN and pixel-label estimator shipped in ``assets/`` for the app's Learn page.

``python -m wsseg demo-checkpoint --models`` makes them with the product's own stages, from tags only:
fresh shapes images (generator seed 1, not the demo's 0) get the shipped demo classifier, its peaks,
selective-search proposals and PRM-retrieval pseudo masks; a small Mask R-CNN (``DEMO_MASKRCNN_CONFIG``:
the from-scratch ``small`` backbone, thin heads, well under 1 M parameters) trains on those pseudo masks
and the pixel-label estimator (``small`` segmenter, started from the classifier's backbone) on the tags.
Both are then scored on 100 held-out shapes images (seed 10,000) and the figures written beside them
in ``assets/demo-models.json``; the Learn page shows them from there.
"""

from __future__ import annotations

import dataclasses
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch

from wsseg.data.images import read_image
from wsseg.demo.project import DEMO_CHECKPOINT, create_demo_project, install_demo_checkpoint, save_slim
from wsseg.fileio import write_json
from wsseg.methods.ple import PLEConfig
from wsseg.models.maskrcnn import MaskRCNNConfig, predict
from wsseg.models.segmenter import SegmenterConfig
from wsseg.progress import image_bar
from wsseg.stages.evaluate_ple import load_ple, score
from wsseg.stages.make_proposals import make_proposals
from wsseg.stages.make_pseudo_masks import export_coco, make_pseudo_masks
from wsseg.stages.train_maskrcnn import load_maskrcnn, train_maskrcnn
from wsseg.stages.train_ple import label_names, train_ple
from wsseg.store.instances import evaluate_split, semantic_truth
from wsseg.store.project import Project
from wsseg.training.engine import CHECKPOINT, TrainConfig, tqdm_callback

ASSETS = DEMO_CHECKPOINT.parent
DEMO_MASKRCNN = ASSETS / "demo-maskrcnn.pt"
DEMO_PLE = ASSETS / "demo-ple.pt"
DEMO_METRICS = ASSETS / "demo-models.json"
HELD_OUT_SEED = 10_000


def demo_maskrcnn_config(num_classes: int) -> MaskRCNNConfig:
    """The demo's Mask R-CNN: ``small`` backbone (width 24), 48-channel FPN, 128-wide box head, fewer
    sampled anchors and RoIs: about 0.7 M parameters, sized for a lesson that answers at once on a laptop."""
    return MaskRCNNConfig(
        num_classes=num_classes,
        backbone="small",
        small_width=24,
        fpn_channels=48,
        box_head_size=128,
        mask_head_channels=48,
        rpn_pre_nms_train=300,
        rpn_post_nms_train=100,
        rpn_batch_per_image=64,
        roi_batch_per_image=32,
    )


@dataclasses.dataclass(frozen=True)
class DemoModelsPlan:
    """What ``make_demo_models`` trains: ``images`` fresh shapes images (seed ``seed``), Mask R-CNN for
    ``maskrcnn_epochs`` and the estimator for ``ple_epochs`` (batch sizes and peak learning rates
    beside them); ``held_out`` images score both."""

    images: int = 400
    seed: int = 1
    maskrcnn_epochs: int = 16
    maskrcnn_batch: int = 8
    maskrcnn_lr: float = 3e-3
    ple_epochs: int = 4
    ple_batch: int = 16
    ple_lr: float = 3e-3
    held_out: int = 100


def pseudo_mask_coco(project: Project) -> Path:
    """Peaks of the shipped classifier, proposals and pseudo masks of every image of ``project``; the
    COCO file of the pseudo masks (``artifacts/demo-pseudo.json``)."""
    with image_bar("peaks") as progress:
        install_demo_checkpoint(project, progress=progress)
    with image_bar("proposals") as progress:
        make_proposals(project, progress=progress)
    with image_bar("pseudo masks") as progress:
        run_id = make_pseudo_masks(project, progress=progress)
    path = project.root / "artifacts" / "demo-pseudo.json"
    export_coco(project, run_id, path)
    return path


def score_models(held_out: Project, maskrcnn: Path | None, ple: Path | None) -> dict[str, Any]:
    """Mask mAP of the Mask R-CNN checkpoint folder ``maskrcnn`` and mIoU (background + classes) of
    the estimator folder ``ple`` on every image of ``held_out``, against its ground truth."""
    out: dict[str, Any] = {"held_out_images": held_out.count_images()}
    if maskrcnn is not None:
        model, _, _ = load_maskrcnn(maskrcnn)
        metrics, _ = evaluate_split(held_out, partial(predict, model), split=None)
        out["maskrcnn"] = {k: metrics[k] for k in ("map25", "map50", "map75", "pointing_accuracy")}
    if ple is not None:
        model, extra = load_ple(ple)
        records = held_out.images()
        truths = semantic_truth(held_out, records, bool(extra["ple"]["background"]))
        pairs = (
            (read_image(held_out.image_path(r), r.filename), t)
            for r, t in zip(records, truths, strict=True)
            if t is not None
        )
        result = score(model, pairs, len(extra["labels"]))["plain"]
        out["ple"] = {"miou": result["miou"], "iou": dict(zip(extra["labels"], result["iou"], strict=True))}
    return out


def make_demo_models(work: Path, plan: DemoModelsPlan | None = None, out: Path = ASSETS) -> dict[str, Any]:
    """Train both demo models under ``work`` (see the module docstring), save them slim into ``out`` and
    write their held-out scores and timings to ``out/demo-models.json``; return that document."""
    plan = plan or DemoModelsPlan()
    torch.manual_seed(plan.seed)
    project = create_demo_project(Path(work) / "train", n_images=plan.images, seed=plan.seed)
    classes = project.classes()
    started = time.perf_counter()
    coco = pseudo_mask_coco(project)
    seconds = {"pseudo_masks": time.perf_counter() - started}

    started = time.perf_counter()
    train_maskrcnn(
        project,
        coco,
        demo_maskrcnn_config(len(classes)),
        TrainConfig(epochs=plan.maskrcnn_epochs, batch_size=plan.maskrcnn_batch, lr=plan.maskrcnn_lr),
        callback=tqdm_callback("demo Mask R-CNN"),
    )
    seconds["maskrcnn"] = time.perf_counter() - started

    started = time.perf_counter()
    labels = label_names(classes, background=True)
    train_ple(
        project,
        SegmenterConfig(num_labels=len(labels), backbone="small"),
        PLEConfig(),
        TrainConfig(epochs=plan.ple_epochs, batch_size=plan.ple_batch, lr=plan.ple_lr),
        init="classifier",
        callback=tqdm_callback("demo pixel-label estimator"),
    )
    seconds["ple"] = time.perf_counter() - started

    folders = {name: project.root / "checkpoints" / name for name in ("maskrcnn", "ple")}
    held_out = create_demo_project(Path(work) / "held-out", n_images=plan.held_out, seed=HELD_OUT_SEED)
    document = {
        "command": "python -m wsseg demo-checkpoint --models",
        "plan": dataclasses.asdict(plan),
        "trained_on": "pseudo masks (Mask R-CNN) and tags (estimator) of fresh shapes images; no true mask",
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "threads": torch.get_num_threads(),
        **score_models(held_out, folders["maskrcnn"], folders["ple"]),
    }
    sizes = {
        DEMO_MASKRCNN.name: save_slim(folders["maskrcnn"] / CHECKPOINT, Path(out) / DEMO_MASKRCNN.name),
        DEMO_PLE.name: save_slim(folders["ple"] / CHECKPOINT, Path(out) / DEMO_PLE.name),
    }
    document["bytes"] = sizes
    write_json(Path(out) / DEMO_METRICS.name, document)
    return document
