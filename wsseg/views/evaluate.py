"""What the Evaluate page shows: a project's runs scored against its ground truth, overall, per class
and per image, and the pictures that compare them with the truth.

What is scored, each on the images with ground truth that the run covered:

- a pseudo-masks run (``wsseg pseudo-masks``): its masks that curation did not reject, on the images
  of the run's split that its peaks run reached;
- a model's predictions: an ``evaluate`` run of ``wsseg evaluate --stage maskrcnn`` (the store's
  ``predictions`` table), on the images of its split;
- a peaks run: pointing accuracy of its peaks (``wsseg.methods.metrics.point_stats``: a peak of a tagged class
  is right when it falls inside a true instance of that class);
- a pixel-label estimator run (``ple_predict``: ``wsseg train-ple --predict``): mIoU of the label maps
  it wrote, against the labels painted from the true instances.

Instance figures are ``wsseg.methods.mask_map.mask_map`` and ``pointing_and_counting``. An image's own score
(``image_score``) is the mean, over its true instances, of the best IoU with a mask of the same class:
the gallery of failures lists the lowest first. Pure numpy: no streamlit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from wsseg.data.images import read_image
from wsseg.methods.mask_map import mask_map, pointing_and_counting
from wsseg.methods.metrics import PointStats, point_stats
from wsseg.methods.overlap import mask_iou
from wsseg.methods.ple import confusion, miou
from wsseg.stages.evaluate import STAGE as MODEL_STAGE
from wsseg.stages.evaluate_ple import LABEL_MAPS
from wsseg.stages.evaluate_ple import PREDICT_STAGE as PLE_STAGE
from wsseg.stages.make_peaks import STAGE as PEAKS_STAGE
from wsseg.stages.make_pseudo_masks import STAGE as PSEUDO_STAGE
from wsseg.stages.train_ple import BACKGROUND
from wsseg.store.importer import GROUND_TRUTH
from wsseg.store.instances import (
    curated_instances,
    predicted_instances,
    semantic_truth,
    true_instances,
    truth_instances,
)
from wsseg.store.project import ImageRecord, Project, RunRecord
from wsseg.structures import Instances, label_map

#: Codes of ``difference_codes``: a pixel right (true positive), predicted where it is not that class
#: (false positive, a wrong class included), or missed (false negative). 0: background in both.
TP, FP, FN = 1, 2, 3
DIFF_COLOURS: dict[int, tuple[int, int, int]] = {TP: (40, 200, 80), FP: (235, 50, 50), FN: (40, 120, 255)}
#: RGB colour of class c (cycled): bright and distinct on the shapes images.
CLASS_COLOURS: tuple[tuple[int, int, int], ...] = (
    (255, 64, 160),
    (64, 200, 255),
    (255, 200, 0),
    (140, 90, 255),
    (255, 120, 40),
    (0, 220, 170),
    (230, 230, 230),
    (160, 255, 60),
)


@dataclass(frozen=True)
class EvalRuns:
    """The finished runs the page can score, newest first: pseudo-masks runs, model evaluations
    (``evaluate`` runs of Mask R-CNN), pixel-label estimator predictions, peaks runs."""

    pseudo: list[RunRecord]
    models: list[RunRecord]
    ple: list[RunRecord]
    peaks: list[RunRecord]

    def empty(self) -> bool:
        return not (self.pseudo or self.models or self.ple or self.peaks)


def eval_runs(project: Project) -> EvalRuns:
    """The project's finished runs, by kind (see ``EvalRuns``)."""

    def done(stage: str) -> list[RunRecord]:
        return [r for r in project.runs(stage) if r.status == "done"]

    models = [r for r in done(MODEL_STAGE) if r.config.get("stage") == "maskrcnn"]
    return EvalRuns(done(PSEUDO_STAGE), models, done(PLE_STAGE), done(PEAKS_STAGE))


def find_run(project: Project, run_id: int) -> RunRecord:
    """The run ``run_id`` (KeyError when the project has none)."""
    found = next((r for r in project.runs() if r.id == run_id), None)
    if found is None:
        raise KeyError(run_id)
    return found


def has_ground_truth(project: Project) -> bool:
    return (project.root / GROUND_TRUTH).is_file()


def run_stamp(project: Project, run: RunRecord) -> tuple[float, ...]:
    """Changes whenever what ``score_run(project, run)`` reads changes: the ground truth's mtime, and for a
    pseudo-masks run the number and the latest edit time of its masks (curation edits them)."""
    truth = project.root / GROUND_TRUTH
    stamp: tuple[float, ...] = (truth.stat().st_mtime if truth.is_file() else 0.0, run.finished_at or 0.0)
    if run.stage == PSEUDO_STAGE:
        with project.reading() as conn:
            count, latest = conn.execute(
                "SELECT COUNT(*), MAX(updated_at) FROM pseudo_masks WHERE run_id = ?", (run.id,)
            ).fetchone()
        stamp += (float(count), float(latest or 0.0))
    return stamp


def run_truth(project: Project, run: RunRecord) -> dict[int, Instances]:
    """The true instances (image id -> Instances) of the images ``run`` covered (see the module
    docstring). BadInputError when the project has no ground truth for the run's split."""
    truth, _ = truth_instances(project, run.config.get("split"))
    if run.stage == PSEUDO_STAGE:
        reached = run.config.get("peaks_run")
        truth = {
            k: v
            for k, v in truth.items()
            if reached is not None and project.artifact(PEAKS_STAGE, reached, k, ".npz").is_file()
        }
    return truth


def _fit(inst: Instances, shape: tuple[int, ...]) -> Instances:
    """``inst`` with its masks resized (nearest) to HxW ``shape`` (masks made at a classifier's size)."""
    if inst.masks.shape[1:] == tuple(shape):
        return inst
    height, width = shape
    masks = (
        np.stack(
            [
                cv2.resize(m.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0
                for m in inst.masks
            ]
        )
        if len(inst)
        else np.zeros((0, height, width), bool)
    )
    return Instances(masks, inst.labels, inst.scores, inst.crowd)


def run_instances(project: Project, run: RunRecord, truth: Mapping[int, Instances]) -> dict[int, Instances]:
    """The instances ``run`` gives the images of ``truth``, at the truth's size: a pseudo-masks run's
    masks that are not rejected (scores: the stored confidence), or an evaluate run's predictions."""
    if run.stage == PSEUDO_STAGE:
        found = curated_instances(project, run.id, truth, lift=False)
    else:
        found = predicted_instances(project, run.id, truth)
    return {k: _fit(found[k], truth[k].masks.shape[1:]) for k in truth}


def image_score(truth: Instances, predicted: Instances) -> float:
    """Mean over the true instances of their best IoU with a predicted mask of the same class, in [0, 1].

    An image without true instances scores 1 when nothing is predicted on it, else 0."""
    if len(truth) == 0:
        return 1.0 if len(predicted) == 0 else 0.0
    if len(predicted) == 0:
        return 0.0
    iou = mask_iou(truth.masks, predicted.masks)
    same = np.asarray(truth.labels)[:, None] == np.asarray(predicted.labels)[None, :]
    return float(np.where(same, iou, 0.0).max(axis=1).mean())


def kept(inst: Instances, score_threshold: float) -> Instances:
    """The instances scoring at least ``score_threshold``."""
    keep = np.asarray(inst.scores, np.float64) >= score_threshold
    return Instances(inst.masks[keep], np.asarray(inst.labels)[keep], np.asarray(inst.scores)[keep])


def score_threshold(run: RunRecord) -> float:
    """What a run's instances must score to count as found: every pseudo mask counts; a model's
    instances from its evaluate run's ``score_threshold`` (default 0.5)."""
    return -np.inf if run.stage == PSEUDO_STAGE else float(run.config.get("score_threshold", 0.5))


def worst_images(per_image: Mapping[int, float], n: int | None = None) -> list[int]:
    """Image ids by score, lowest first (ties: lower id first); the first ``n`` (all when None)."""
    order = sorted(per_image, key=lambda k: (per_image[k], k))
    return order if n is None else order[:n]


@dataclass(frozen=True)
class InstanceScores:
    """One source's instance figures against the truth.

    maps: ``map25``/``map50``/``map75`` (NaN without truth); per_class: the same keys -> C floats (NaN
    for a class without true instances). pointing_accuracy, count_mae: ``wsseg.methods.mask_map.
    pointing_and_counting``. per_image: image id -> ``image_score`` in [0, 1] of the instances
    kept by the score threshold.
    """

    maps: dict[str, float]
    per_class: dict[str, list[float]]
    pointing_accuracy: float
    count_mae: float
    per_image: dict[int, float]


def score_instances(
    truth: Mapping[int, Instances],
    predicted: Mapping[int, Instances],
    num_classes: int,
    score_threshold: float = 0.5,
) -> InstanceScores:
    """Every figure of ``InstanceScores`` for ``predicted`` against ``truth`` (both keyed by image id);
    ``score_threshold``: what counting and the image scores keep (mAP and pointing use every instance)."""
    found = mask_map(truth, predicted, num_classes)
    pointing = pointing_and_counting(truth, predicted, score_threshold)
    per_image = {
        k: image_score(
            inst, kept(predicted.get(k) or Instances.empty(*inst.masks.shape[1:]), score_threshold)
        )
        for k, inst in truth.items()
    }
    return InstanceScores(
        found.maps, found.per_class, pointing["pointing_accuracy"], pointing["count_mae"], per_image
    )


def score_run(project: Project, run: RunRecord) -> InstanceScores:
    """``score_instances`` of a pseudo-masks or evaluate run on the images it covered, with the run's
    ``score_threshold``."""
    truth = run_truth(project, run)
    found = run_instances(project, run, truth)
    return score_instances(truth, found, len(project.classes()), score_threshold(run))


def peak_scores(project: Project, run: RunRecord) -> dict[str, object]:
    """Pointing accuracy of a peaks run's peaks on the images of its split it reached that have ground
    truth (BadInputError when there are none).

    Returns ``pointing_accuracy`` (peaks of a tagged class inside a true instance of it, over those
    peaks), ``instance_recall`` (true instances holding a peak of their class), ``per_class`` (C floats,
    the pointing accuracy of each class's peaks; NaN for a class without peaks) and ``images``. Peaks
    found at a classifier's input size are scaled to the image's size.
    """
    classes = project.classes()
    truth, _ = truth_instances(project, run.config.get("split"))
    records = [project.image(k) for k in truth if project.artifact(PEAKS_STAGE, run.id, k, ".npz").is_file()]
    total, per_class = PointStats(), [PointStats() for _ in classes]
    for record in records:
        inst = truth[record.id]
        peaks = project.peaks(record.id, run.id)
        scale = (1.0, 1.0)
        if peaks:
            with np.load(project.artifact(PEAKS_STAGE, run.id, record.id, ".npz")) as data:
                height, width = data["prms"].shape[1:]
            scale = (record.height / height, record.width / width)
        points = [(classes.index(p.class_name), p.y * scale[0], p.x * scale[1]) for p in peaks]
        present = [classes.index(t) for t in record.tags]
        total = total + point_stats(points, inst.masks, inst.labels, present)
        for c in present:
            per_class[c] = per_class[c] + point_stats(points, inst.masks, inst.labels, [c])
    return {
        "pointing_accuracy": total.precision,
        "instance_recall": total.recall,
        "per_class": [s.precision for s in per_class],
        "images": len(records),
    }


def ple_scores(project: Project, run: RunRecord) -> dict[str, object]:
    """mIoU of a pixel-label estimator run's label maps (``artifacts/ple/run-<id>/<image id>.png``) on
    the images with ground truth: ``miou``, ``iou`` (label name -> IoU, NaN for a label in neither),
    ``labels`` and ``images`` (0, with ``miou`` NaN, when no written map has ground truth)."""
    labels: list[str] = list(run.config.get("labels") or [])
    folder = project.path(run.artifacts) if run.artifacts else project.artifacts(LABEL_MAPS, run.id)
    records = [r for r in project.images(split=run.config.get("split")) if (folder / f"{r.id}.png").is_file()]
    truths = semantic_truth(project, records, bool(labels) and labels[0] == BACKGROUND)
    counts = np.zeros((len(labels), len(labels)), np.int64)
    scored = 0
    for record, truth in zip(records, truths, strict=True):
        if truth is None:
            continue
        with Image.open(folder / f"{record.id}.png") as png:
            predicted = np.asarray(png)
        if predicted.shape != truth.shape:
            predicted = cv2.resize(predicted, truth.shape[::-1], interpolation=cv2.INTER_NEAREST)
        counts += confusion(truth, predicted, len(labels))
        scored += 1
    mean, iou = miou(counts) if scored else (float("nan"), np.full(len(labels), np.nan))
    return {
        "miou": mean,
        "iou": {name: float(v) for name, v in zip(labels, iou, strict=True)},
        "labels": labels,
        "images": scored,
    }


def difference_codes(truth: Instances, predicted: Instances) -> np.ndarray:
    """HxW uint8 per-pixel comparison of two images' instances, class-aware: ``TP`` where the predicted
    class is the true one, ``FP`` where a class is predicted on background or on another class, ``FN``
    where a true instance is not predicted at all, 0 where both are background."""
    shape = truth.masks.shape[1:]
    true, pred = label_map(truth, shape), label_map(predicted, shape)
    codes = np.zeros(shape, np.uint8)
    codes[(pred > 0) & (pred == true)] = TP
    codes[(pred > 0) & (pred != true)] = FP
    codes[(true > 0) & (pred == 0)] = FN
    return codes


def dimmed(image: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 grey: half the luma (0.299 R + 0.587 G + 0.114 B) of HxWx3 uint8 ``image``, rounded;
    the background on which masks' colours read whatever the image's own colours."""
    grey = np.rint(0.5 * (image.astype(np.float32) @ np.float32([0.299, 0.587, 0.114]))).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def difference_overlay(image: np.ndarray, codes: np.ndarray, opacity: float = 0.8) -> np.ndarray:
    """HxWx3 uint8: ``image`` (HxWx3 uint8) ``dimmed``, each coded pixel blended with its
    ``DIFF_COLOURS`` colour, ``(1 - opacity) * grey + opacity * colour``, rounded."""
    out = dimmed(image).astype(np.float32)
    for code, colour in DIFF_COLOURS.items():
        where = codes == code
        out[where] = (1.0 - opacity) * out[where] + opacity * np.float32(colour)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def class_colour(class_index: int) -> tuple[int, int, int]:
    return CLASS_COLOURS[int(class_index) % len(CLASS_COLOURS)]


@dataclass(frozen=True)
class ImageComparison:
    """One image and what each source says of it, all at the image's size H x W.

    image: HxWx3 uint8. truth: the true Instances. pseudo / predicted: the pseudo-masks run's and the
    model run's Instances that its ``score_threshold`` keeps (None when no such run was asked for)."""

    record: ImageRecord
    image: np.ndarray
    truth: Instances
    pseudo: Instances | None
    predicted: Instances | None


def compare_images(
    project: Project, image_ids: Sequence[int], pseudo_run: int | None, model_run: int | None
) -> list[ImageComparison]:
    """``ImageComparison`` of each image of ``image_ids`` (in that order) with the two runs."""
    records = [project.image(k) for k in image_ids]
    truth = true_instances(project, records)
    runs = {
        kind: find_run(project, run_id) for kind, run_id in (("p", pseudo_run), ("m", model_run)) if run_id
    }
    found = {
        kind: {k: kept(v, score_threshold(run)) for k, v in run_instances(project, run, truth).items()}
        for kind, run in runs.items()
    }
    out = []
    for record in records:
        image = read_image(project.image_path(record), record.filename)
        shape = truth[record.id].masks.shape[1:]
        if image.shape[:2] != shape:
            image = cv2.resize(image, shape[::-1], interpolation=cv2.INTER_AREA)
        out.append(
            ImageComparison(
                record,
                image,
                truth[record.id],
                found["p"][record.id] if "p" in found else None,
                found["m"][record.id] if "m" in found else None,
            )
        )
    return out
