"""Per-pixel predictions of the pixel-label estimator, their mIoU, and writing them to a project.

``predict`` runs the network alone (tags are not needed at inference), optionally refined by the dense
CRF. ``evaluate_ple`` scores a project's split against the labels painted from its ground-truth
instances and writes every prediction as ``artifacts/ple/run-<id>/<image id>.png`` (HxW uint8 label
map, values index the run's ``labels``) with a ``ple_predict`` run row holding the metrics.
``self_training_labels`` turns a trained estimator's tag-masked, CRF-refined predictions on its own
training images into pixel labels for a second round of training (``train-ple --labels-from``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wsseg.data.images import read_image
from wsseg.errors import BadInputError
from wsseg.fileio import write_png
from wsseg.methods.crf import CRFConfig, dense_crf
from wsseg.methods.ple import IGNORE, confusion, miou, present_labels, renormalised_over
from wsseg.models.normalise import to_tensor
from wsseg.models.segmenter import Segmenter, SegmenterConfig
from wsseg.stages.common import checkpoint_state, loaded_once
from wsseg.stages.per_image import ImageProgress, run_per_image, task_filename
from wsseg.stages.pool import check_cluster
from wsseg.store.instances import semantic_truth
from wsseg.store.project import Project

PREDICT_STAGE = "ple_predict"
#: The artifacts folder of a ``ple_predict`` run's label maps: ``artifacts/ple/run-<id>/<image id>.png``.
LABEL_MAPS = "ple"


@torch.inference_mode()
def predict(
    model: Segmenter, image: np.ndarray, crf: CRFConfig | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One HxWx3 uint8 image -> (HxW uint8 label map, float32 KxHxW p(z|x) after the CRF when given)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise BadInputError("image", f"expected HxWx3 uint8, got {image.shape} {image.dtype}")
    model.eval()
    device = next(model.parameters()).device
    probs = torch.softmax(model(to_tensor(image)[None].to(device)), dim=1)
    if crf is not None:
        raw = torch.from_numpy(np.array(image)).to(device)[None]
        probs = dense_crf(probs, raw, crf)
    probs = probs[0].float().cpu().numpy()
    return probs.argmax(0).astype(np.uint8), probs


@torch.inference_mode()
def self_training_labels(
    model: Segmenter,
    images: np.ndarray,
    tags: np.ndarray,
    background: bool,
    crf: CRFConfig | None = None,
    confidence: float = 0.0,
    batch_size: int = 32,
) -> np.ndarray:
    """Pixel labels for a second round of training, from a trained estimator on its own tagged images.

    images: NxHxWx3 uint8; tags: NxC {0, 1}. Per image: p(z|x), absent labels zeroed and renormalised
    (the estimator's step 1, docs/methods.md), refined by the dense CRF when ``crf``, argmax. Pixels whose
    (refined) probability of that label is below ``confidence`` get ``IGNORE``. Returns NxHxW uint8.
    Only tags and the images are used: these labels are as weak as the estimator's.
    """
    model.eval()
    device = next(model.parameters()).device
    out = np.empty(images.shape[:3], np.uint8)
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        probs = torch.softmax(model(torch.stack([to_tensor(im) for im in batch]).to(device)), dim=1)
        present = present_labels(torch.as_tensor(tags[start : start + batch_size]), background)
        probs = renormalised_over(probs, present)
        if crf is not None:
            probs = dense_crf(probs, torch.from_numpy(np.ascontiguousarray(batch)).to(device), crf)
        best, labels = probs.max(1)
        labels[best < confidence] = IGNORE
        out[start : start + len(batch)] = labels.cpu().numpy().astype(np.uint8)
    return out


def score(
    model: Segmenter,
    pairs: Iterable[tuple[np.ndarray, np.ndarray]],
    num_labels: int,
    crfs: dict[str, CRFConfig | None] | None = None,
) -> dict[str, dict[str, Any]]:
    """mIoU of ``model`` over (HxWx3 uint8 image, HxW uint8 truth) pairs, once per CRF setting.

    ``crfs`` maps a name to a CRF config (None: the network alone); default ``{"plain": None}``. Returns
    ``{name: {"miou": float, "iou": [K floats, NaN for labels never seen], "pixels": int}}``.
    """
    crfs = crfs if crfs is not None else {"plain": None}
    counts = {name: np.zeros((num_labels, num_labels), np.int64) for name in crfs}
    for image, truth in pairs:
        for name, crf in crfs.items():
            counts[name] += confusion(truth, predict(model, image, crf)[0], num_labels)
    out = {}
    for name, matrix in counts.items():
        mean, iou = miou(matrix)
        out[name] = {"miou": mean, "iou": [float(v) for v in iou], "pixels": int(matrix.sum())}
    return out


def evaluate_ple(
    project: Project,
    name: str = "ple",
    split: str | None = "val",
    crf: CRFConfig | None = None,
    write: bool = True,
    limit: int | None = None,
    progress: ImageProgress | None = None,
    workers: int = 1,
    cluster: str | None = None,
) -> dict[str, Any]:
    """Score the trained network ``checkpoints/<name>`` on the project's ``split``.

    The label maps are predicted in this process (``workers`` 1), in ``workers`` local processes or on
    the Ray cluster at ``cluster``, each loading the network once on its device; this process writes
    them and scores them.

    Returns ``{"miou", "iou" (label -> IoU), "images", "labels", "run_id"}`` (mIoU keys only where the
    project has ground truth). With ``write``, the label maps go to ``artifacts/ple/run-<id>/<image id>.png``
    and a ``ple_predict`` run row records the config and the metrics. ``progress(k, n)`` follows each image.
    """
    checkpoint = str(project.root / "checkpoints" / name)
    _, extra = loaded_once(load_ple, checkpoint)
    labels: list[str] = extra["labels"]
    background = bool(extra["ple"]["background"])
    records = project.images(split=split, limit=limit)
    if not records:
        raise BadInputError(str(project.root), f"has no images in split {split!r}")
    truths = semantic_truth(project, records, background)
    run_id = None
    if write:
        config = {
            "name": name,
            "split": split,
            "crf": dataclasses.asdict(crf) if crf else None,
            "labels": labels,
        }
        check_cluster(cluster)
        run_id = project.start_run(PREDICT_STAGE, config)
        folder = project.artifacts(LABEL_MAPS, run_id)
        with project.transaction() as conn:
            conn.execute(
                "UPDATE runs SET artifacts = ? WHERE id = ?", (str(folder.relative_to(project.root)), run_id)
            )
    counts = np.zeros((len(labels), len(labels)), np.int64)

    def store(task: dict[str, Any], predicted: np.ndarray) -> dict[str, int]:
        record, truth = by_id[task["image_id"]]
        if run_id is not None:
            write_png(project.artifact(LABEL_MAPS, run_id, record.id, ".png"), predicted)
        if truth is None:
            return {}
        np.add(counts, confusion(truth, predicted, len(labels)), out=counts)
        return {"scored_images": 1}

    def summary(totals: dict[str, float]) -> dict[str, Any]:
        metrics: dict[str, Any] = {**totals, "labels": labels}
        if totals["scored_images"]:
            mean, iou = miou(counts)
            metrics["miou"] = mean
            metrics["iou"] = {label: float(v) for label, v in zip(labels, iou, strict=True)}
        return metrics

    by_id = {r.id: (r, t) for r, t in zip(records, truths, strict=True)}
    tasks = [
        {
            "checkpoint": checkpoint,
            "image": str(project.image_path(r)),
            "filename": r.filename,
            "image_id": r.id,
            "crf": dataclasses.asdict(crf) if crf else None,
        }
        for r in records
    ]
    metrics = run_per_image(
        project,
        run_id,
        tasks,
        _label_map,
        store,
        ("scored_images",),
        workers=workers,
        progress=progress,
        summary=summary,
        name=task_filename,
        cluster=cluster,
    )
    return {**metrics, "run_id": run_id}


def _label_map(task: dict[str, Any]) -> np.ndarray:
    """Worker: one image's label map (HxW uint8), after the CRF when the task has one."""
    model, _ = loaded_once(load_ple, task["checkpoint"])
    crf = CRFConfig(**task["crf"]) if task["crf"] else None
    return predict(model, read_image(task["image"], task["filename"]), crf)[0]


def load_ple(
    project_or_folder: Project | Path, name: str = "ple", device: str | torch.device = "cpu"
) -> tuple[Segmenter, dict[str, Any]]:
    """The trained network (eval mode) and its checkpoint's extra state (``labels``, ``classes``, ...)."""
    _, state = checkpoint_state(project_or_folder, name, device)
    extra = state["extra"]
    model = Segmenter(SegmenterConfig(**extra["model"]))
    model.load_state_dict(state["model"])
    return model.to(device).eval(), extra
