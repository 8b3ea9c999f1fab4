"""Evaluate the tag classifier against a project's ground truth: classification mAP and peak quality.

Peaks are the inference peaks of ``wsseg.models.peaks.find_peaks`` (the recipe's, ``wsseg.stages.recipes.
INFERENCE_PEAKS``, by default) of the classes the image is tagged with, scored as in PRM's evaluation: a
peak of a present class is correct when it falls inside a true instance of that class. The same is reported for each peak's WISE point, the argmax of its peak response map.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch

from wsseg.errors import BadInputError
from wsseg.methods.metrics import PointStats, chance_shares, mean_average_precision, point_stats
from wsseg.methods.prm import peak_response_maps
from wsseg.models.classifier import PeakClassifier
from wsseg.models.peaks import find_peaks
from wsseg.stages.make_peaks import prepare_image, prepared_shape
from wsseg.stages.recipes import INFERENCE_PEAKS, InferencePeaks
from wsseg.store.importer import ground_truth
from wsseg.store.project import Project


def evaluate_classifier(
    project: Project,
    model: PeakClassifier,
    classes: list[str],
    split: str | None = "val",
    size: int | None = None,
    inference: InferencePeaks = INFERENCE_PEAKS,
    batch_size: int = 32,
    prm_images: int = 100,
) -> dict[str, Any]:
    """Metrics of ``model`` on the project's ``split``: ``cls_map`` (+ per class), and where the project
    has instance ground truth ``peak_precision``, ``instance_recall``, ``count_mae``, ``peaks_per_image``,
    and ``prm_point_precision`` / ``prm_point_recall`` for the PRM argmax of each peak (on the first
    ``prm_images`` images: a PRM costs a backward pass per peak). Two baselines to read them by:
    ``chance_peak_precision``, the precision of a peak placed uniformly at random (the mean share of the
    image a tagged class's instances cover), and ``instances_below_one_cell``, the share of instances
    smaller than one cell of the class response map (stride squared, at the size the peaks are found)."""
    records = project.images(split=split)
    if not records:
        raise BadInputError(str(project.root), f"has no images in split {split!r} to evaluate on")
    gt = ground_truth(project)
    model.eval()
    scores, crms = [], []
    kept: list[torch.Tensor] = []  # the first ``prm_images`` inputs, for their PRMs below
    for start in range(0, len(records), batch_size):
        chunk = records[start : start + batch_size]
        batch = torch.cat([prepare_image(project, r, size, inference.scale)[1] for r in chunk])
        kept.extend(batch[: max(0, prm_images - start)])  # outside inference mode: PRMs backpropagate
        with torch.inference_mode():
            out = model(batch)
        scores.append(out["logits"].float().numpy())
        crms.extend(out["crm"].float().numpy())
    index = {name: i for i, name in enumerate(classes)}
    labels = np.zeros((len(records), len(classes)), dtype=np.float32)
    for n, record in enumerate(records):
        for tag in record.tags:
            labels[n, index[tag]] = 1
    logits = np.concatenate(scores)
    cls_map, per_class = mean_average_precision(logits, labels)
    result: dict[str, Any] = {"cls_map": cls_map, "cls_ap": dict(zip(classes, per_class, strict=True))}
    if gt is None or not any(gt.instances.values()):
        return result
    stats, point_stats_sum = PointStats(), PointStats()
    shares: list[float] = []  # per (image, tagged class): what a randomly placed peak would score
    small = 0  # instances smaller than one cell of the class response map
    prm_config = inference.prm_config()
    for n, (record, crm) in enumerate(zip(records, crms, strict=True)):
        instances = gt.instances.get(record.id, [])
        masks = (
            np.stack([i.mask for i in instances])
            if instances
            else np.zeros((0, record.height, record.width), bool)
        )
        inst_labels = np.array([index[i.category] for i in instances], dtype=np.int64)
        shape = prepared_shape(record.height, record.width, size, inference.scale)
        if masks.shape[1:] != shape:
            masks = _resize_masks(masks, shape)
        present = [index[t] for t in record.tags]
        shares.extend(chance_shares(masks, inst_labels, present))
        small += int(np.sum(masks.sum(axis=(1, 2)) < model.stride**2))
        peaks = find_peaks(
            crm,
            model.config.peaks,
            class_threshold=inference.class_threshold,
            peak_threshold=inference.peak_threshold,
            relative_threshold=inference.relative_threshold,
            smooth=inference.smooth,
            stride=model.stride,
            image_size=masks.shape[1:],
            class_scores=logits[n],
        )
        stats = stats + point_stats([(p.class_index, p.y, p.x) for p in peaks], masks, inst_labels, present)
        if n < prm_images:
            wanted = {(p.class_index, p.map_y, p.map_x) for p in peaks if p.class_index in present}
            prm = peak_response_maps(model, kept[n][None], replace(prm_config, classes=tuple(present)))
            points = [
                (p.class_index, *np.unravel_index(int(m.argmax()), m.shape))
                for p, m in zip(prm.peaks, prm.maps, strict=True)
                if (p.class_index, p.map_y, p.map_x) in wanted
            ]
            point_stats_sum = point_stats_sum + point_stats(points, masks, inst_labels, present)
    result.update(
        peak_precision=stats.precision,
        instance_recall=stats.recall,
        count_mae=stats.count_mae,
        peaks_per_image=stats.peaks / len(records),
        chance_peak_precision=float(np.mean(shares)) if shares else float("nan"),
        instances_below_one_cell=small / stats.instances if stats.instances else float("nan"),
        prm_point_precision=point_stats_sum.precision,
        prm_point_recall=point_stats_sum.recall,
    )
    return result


def _resize_masks(masks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    import cv2

    return (
        np.stack(
            [
                cv2.resize(m.astype(np.uint8), shape[::-1], interpolation=cv2.INTER_NEAREST).astype(bool)
                for m in masks
            ]
        )
        if len(masks)
        else np.zeros((0, *shape), bool)
    )
