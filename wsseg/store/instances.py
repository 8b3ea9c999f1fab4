"""A project's instances read from the store, the one place stored rows become ``Instances``: ground
truth, pseudo-mask runs (as stored or as curated), evaluate runs' predictions; and any predictor
scored against the truth of a split."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wsseg.data.coco import decode_rle, read_coco_results
from wsseg.data.images import read_image
from wsseg.data.tagged_folder import Problem
from wsseg.errors import BadInputError
from wsseg.methods.mask_map import mask_map, pointing_and_counting
from wsseg.methods.ple import IGNORE
from wsseg.store.importer import ground_truth
from wsseg.store.project import ImageRecord, Project
from wsseg.store.results import CURATED
from wsseg.structures import Instances


def rows_instances(
    rows: Sequence[Mapping[str, Any]], classes: Sequence[str], shape: tuple[int, int], lift: float = 0.0
) -> Instances:
    """Stored mask rows of one image (pseudo masks or predictions: ``rle``, ``class_name``, ``score``)
    as Instances of HxW ``shape``; each score is the stored one (0 when none), plus ``lift`` for rows
    whose ``status`` is accepted or edited."""
    if not rows:
        return Instances.empty(*shape)
    return Instances(
        np.stack([decode_rle(r["rle"]) for r in rows]),
        np.array([classes.index(r["class_name"]) for r in rows], np.int64),
        np.array(
            [(r["score"] or 0.0) + (lift if r.get("status") in CURATED else 0.0) for r in rows], np.float64
        ),
    )


def true_instances(project: Project, records: Sequence[ImageRecord]) -> dict[int, Instances]:
    """The ground-truth instances of ``records`` (image id -> Instances, scores 1); an image without
    stored truth has none."""
    gt = ground_truth(project)
    classes = project.classes()
    out = {}
    for r in records:
        found = gt.instances.get(r.id, []) if gt is not None else []
        masks = np.stack([i.mask for i in found]) if found else np.zeros((0, r.height, r.width), bool)
        labels = np.array([classes.index(i.category) for i in found], np.int64)
        crowd = np.array([i.iscrowd for i in found], bool)
        out[r.id] = Instances(masks, labels, np.ones(len(found)), crowd)
    return out


def truth_instances(project: Project, split: str | None = "val") -> tuple[dict[int, Instances], list[str]]:
    """The ground-truth instances of a project split's images that have truth (keyed by image id), and
    the class names. Raises BadInputError when the project has no ground truth or none for the split."""
    gt = ground_truth(project)
    if gt is None:
        raise BadInputError(
            str(project.root), "has no ground truth (ground_truth.json): nothing to evaluate against"
        )
    truth = true_instances(project, [r for r in project.images(split=split) if r.id in gt.instances])
    if not truth:
        having = _truth_splits(project)
        listed = ", ".join(f"{name} ({n} images)" for name, n in having.items()) or "none"
        raise BadInputError(
            f"split {split!r}", f"has no image with ground truth; the splits that have: {listed} (or all)"
        )
    return truth, project.classes()


def _truth_splits(project: Project) -> dict[str, int]:
    """Split name -> its number of images with ground truth (splits without any left out)."""
    gt = ground_truth(project)
    counts: dict[str, int] = {}
    for record in project.images() if gt is not None else []:
        if record.id in gt.instances:
            counts[record.split] = counts.get(record.split, 0) + 1
    return dict(sorted(counts.items()))


def evaluation_split(project: Project, asked: str | None) -> str | None:
    """The split to evaluate on: ``asked`` ("all": None, every image); when nothing is asked, ``val``
    if it has images (with truth, when the project has truth), else every image."""
    if asked is not None:
        return None if asked == "all" else asked
    if ground_truth(project) is not None:
        return "val" if "val" in _truth_splits(project) else None
    return "val" if "val" in project.split_counts() else None


def _by_image(rows: Iterable[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    grouped: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(row["image_id"], []).append(row)
    return grouped


def stored_instances(project: Project, run_id: int, truth: Mapping[int, Instances]) -> dict[int, Instances]:
    """A pseudo-masks run's masks as Instances (scores: the stored confidence) for the images of ``truth``."""
    classes, grouped = project.classes(), _by_image(project.pseudo_masks(run_id=run_id))
    return {k: rows_instances(grouped.get(k, []), classes, t.masks.shape[1:]) for k, t in truth.items()}


def curated_instances(
    project: Project, run_id: int, truth: Mapping[int, Instances], lift: bool = True
) -> dict[int, Instances]:
    """The run's masks that are not rejected, as Instances for the images of ``truth``; scores: the stored
    confidence, plus (with ``lift``) (max - min + 1) over the run for accepted and edited masks, so they
    rank first."""
    rows = [m for m in project.pseudo_masks(run_id=run_id) if m["status"] != "rejected"]
    scores = [m["score"] or 0.0 for m in rows]
    shift = (max(scores) - min(scores) + 1.0) if scores and lift else 0.0
    classes, grouped = project.classes(), _by_image(rows)
    return {
        k: rows_instances(grouped.get(k, []), classes, t.masks.shape[1:], shift) for k, t in truth.items()
    }


def predicted_instances(
    project: Project, run_id: int, truth: Mapping[int, Instances]
) -> dict[int, Instances]:
    """An evaluate run's stored predictions as Instances for the images of ``truth``."""
    classes, grouped = project.classes(), _by_image(project.predictions(run_id))
    return {k: rows_instances(grouped.get(k, []), classes, t.masks.shape[1:]) for k, t in truth.items()}


def score_results(
    project: Project, path: str | Path, split: str | None = None, score_threshold: float = 0.5
) -> tuple[dict[str, Any], list[Problem]]:
    """Score a COCO results file from any tool (image and category ids as the project's exports give
    them: the source's where there is one) against the truth of ``split``; returns the metrics (as
    ``evaluate_split``'s, plus ``results`` read and ``refused``) and a Problem per result dropped."""
    truth, classes = truth_instances(project, split)
    records = {r.id: r for r in project.images()}
    source = {r.id: r.source_id if r.source_id is not None else r.id for r in records.values()}
    sizes = {source[k]: (r.height, r.width) for k, r in records.items()}
    categories = {cid: name for name, cid in project.category_ids().items()}
    found, problems = read_coco_results(path, sizes, categories)
    predictions: dict[int, Instances] = {}
    for image_id, inst in truth.items():
        detections = found.get(source[image_id], [])
        shape = inst.masks.shape[1:]
        predictions[image_id] = (
            Instances(
                np.stack([d.mask for d in detections]),
                np.array([classes.index(d.category) for d in detections], np.int64),
                np.array([d.score for d in detections], np.float64),
            )
            if detections
            else Instances.empty(*shape)
        )
    metrics: dict[str, Any] = mask_map(truth, predictions, len(classes)).as_dict(classes)
    metrics.update(pointing_and_counting(truth, predictions, score_threshold))
    metrics.update(images=len(truth), results=sum(len(v) for v in found.values()), refused=len(problems))
    return metrics, problems


def evaluate_split(
    project: Project,
    predict: Callable[[list[np.ndarray]], list[Instances]],
    split: str | None = "val",
    score_threshold: float = 0.5,
    batch_size: int = 16,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[dict[str, Any], dict[int, Instances]]:
    """Run ``predict`` (HxWx3 uint8 images -> their Instances) over the split's images with ground
    truth; return (metrics, predictions by image id). Metrics: ``map25``/``map50``/``map75``, per class
    (``per_class_map50`` ...: class name -> AP, None without truth), ``pointing_accuracy``, ``count_mae``
    and ``images``. ``progress(done, total)`` is called after every batch."""
    truth, classes = truth_instances(project, split)
    ids = list(truth)
    predictions: dict[int, Instances] = {}
    for start in range(0, len(ids), batch_size):
        chunk = ids[start : start + batch_size]
        images = []
        for image_id in chunk:
            record = project.image(image_id)
            images.append(read_image(project.image_path(record), record.filename))
        predictions.update(zip(chunk, predict(images), strict=True))
        if progress is not None:
            progress(len(predictions), len(ids))
    metrics: dict[str, Any] = mask_map(truth, predictions, len(classes)).as_dict(classes)
    metrics.update(pointing_and_counting(truth, predictions, score_threshold))
    metrics["images"] = len(ids)
    return metrics, predictions


def tag_agreement(
    project: Project,
    predict: Callable[[list[np.ndarray]], list[Instances]],
    split: str | None = None,
    score_threshold: float = 0.5,
    batch_size: int = 16,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[dict[str, Any], dict[int, Instances]]:
    """What a project without ground truth can still measure: how the classes ``predict`` finds in
    each image of ``split`` (instances scoring at least ``score_threshold``) agree with its tags.

    Returns (metrics, predictions by image id). Metrics: ``against`` "tags", ``images``,
    ``tag_precision`` (of the (image, class) pairs predicted, the share that are tagged; None when
    none are predicted), ``tag_recall`` (of the tagged pairs, the share predicted; None without tags)
    and ``instances_per_image`` (kept instances). ``progress(done, total)`` follows every batch."""
    records = project.images(split=split)
    if not records:
        raise BadInputError(str(project.root), f"has no images in split {split!r}")
    classes = project.classes()
    predictions: dict[int, Instances] = {}
    for start in range(0, len(records), batch_size):
        chunk = records[start : start + batch_size]
        images = [read_image(project.image_path(r), r.filename) for r in chunk]
        predictions.update(zip([r.id for r in chunk], predict(images), strict=True))
        if progress is not None:
            progress(len(predictions), len(records))
    hits = predicted = tagged = kept = 0
    for record in records:
        inst = predictions[record.id]
        keep = np.asarray(inst.scores) >= score_threshold
        found = {classes[int(label)] for label in np.asarray(inst.labels)[keep]}
        hits += len(found & set(record.tags))
        predicted += len(found)
        tagged += len(record.tags)
        kept += int(keep.sum())
    metrics = {
        "against": "tags",
        "images": len(records),
        "tag_precision": hits / predicted if predicted else None,
        "tag_recall": hits / tagged if tagged else None,
        "instances_per_image": kept / len(records),
    }
    return metrics, predictions


def semantic_truth(
    project: Project, records: Sequence[ImageRecord], background: bool
) -> list[np.ndarray | None]:
    """HxW uint8 label maps from the project's ground-truth instances (label of class c: c + 1 with
    background, c without; pixels no instance covers: 0 with background, ``IGNORE`` without). None for
    images the ground truth does not cover; all None when the project has no ground truth."""
    coco = ground_truth(project)
    if coco is None:
        return [None] * len(records)
    classes = project.classes()
    known = {img.id for img in coco.images}
    out: list[np.ndarray | None] = []
    for record in records:
        if record.id not in known:
            out.append(None)
            continue
        labels = np.full((record.height, record.width), 0 if background else IGNORE, np.uint8)
        for inst in coco.instances.get(record.id, []):
            labels[inst.mask] = classes.index(inst.category) + (1 if background else 0)
        out.append(labels)
    return out
