"""Instance evaluation: mask mAP at IoU 0.25, 0.5 and 0.75 with pycocotools, pointing and counting.

Every stage that produces instance masks (pseudo masks, Mask R-CNN) is scored by ``mask_map``, so their
figures are comparable. COCO's conventions hold: 101-point interpolated precision, at most ``max_dets``
detections per image, a class without any true instance left out of the mean, crowd regions
(``Instances.crowd``) ignored: a prediction matched to one counts neither way.

``pointing_and_counting`` adds the two figures of the peak literature, computed from the instances a
model keeps (score >= a threshold): pointing accuracy (Zhang et al.'s pointing game, with the most
interior pixel of the best mask of each present class as the point) and the mean absolute counting
error. ``wsseg.store.instances.evaluate_split`` runs a predictor over a project split and scores it.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from scipy import ndimage

from wsseg.data.coco import encode_mask
from wsseg.structures import Instances

IOU_THRESHOLDS: tuple[float, ...] = (0.25, 0.5, 0.75)


@dataclass(frozen=True)
class MaskMAP:
    """mAP at each IoU threshold (key ``map25`` for 0.25 ...), and per class at each threshold.

    ``per_class[key][c]`` is NaN for a class without true instances."""

    maps: dict[str, float]
    per_class: dict[str, list[float]]

    def as_dict(self, class_names: Sequence[str] | None = None) -> dict[str, object]:
        out: dict[str, object] = dict(self.maps)
        for key, values in self.per_class.items():
            names = class_names or [str(c) for c in range(len(values))]
            out[f"per_class_{key}"] = {
                n: (None if np.isnan(v) else v) for n, v in zip(names, values, strict=True)
            }
        return out


def threshold_key(iou: float) -> str:
    """0.5 -> 'map50', 0.25 -> 'map25'."""
    return f"map{round(iou * 100):d}"


def mask_map(
    truth: Mapping[int, Instances],
    predictions: Mapping[int, Instances],
    num_classes: int,
    iou_thresholds: Sequence[float] = IOU_THRESHOLDS,
    max_dets: int = 100,
) -> MaskMAP:
    """Mask mAP of ``predictions`` against ``truth`` (both keyed by image id) with pycocotools.

    Images are those of ``truth``; a prediction for an image not in ``truth`` is an error."""
    extra = set(predictions) - set(truth)
    if extra:
        raise ValueError(f"predictions for images without ground truth: {sorted(extra)[:5]}")
    gt = _coco_ground_truth(truth, num_classes)
    detections = [
        {
            "image_id": int(image_id),
            "category_id": int(label) + 1,
            "segmentation": encode_mask(mask),
            "score": float(score),
        }
        for image_id, inst in predictions.items()
        for mask, label, score in zip(inst.masks, inst.labels, inst.scores, strict=True)
    ]
    keys = [threshold_key(t) for t in iou_thresholds]
    has_truth = np.zeros(num_classes, bool)  # a class with only crowd regions is left out, as COCO does
    for inst in truth.values():
        has_truth[np.asarray(inst.labels, dtype=np.int64)[~inst.is_crowd]] = True
    if not detections:
        per_class = {k: [0.0 if has_truth[c] else float("nan") for c in range(num_classes)] for k in keys}
        return MaskMAP({k: (0.0 if has_truth.any() else float("nan")) for k in keys}, per_class)

    with _quiet():
        dt = gt.loadRes(detections)
        ev = COCOeval(gt, dt, iouType="segm")
        ev.params.iouThrs = np.asarray(iou_thresholds, dtype=np.float64)
        ev.params.maxDets = [max_dets]
        ev.params.areaRng = [[0.0, 1e10]]
        ev.params.areaRngLbl = ["all"]
        ev.evaluate()
        ev.accumulate()
    # precision: [T thresholds, R recall points, K classes, A area ranges, M max-dets]; -1 = no truth.
    precision = ev.eval["precision"][:, :, :, 0, 0]
    maps: dict[str, float] = {}
    per_class: dict[str, list[float]] = {}
    for t, key in enumerate(keys):
        values = []
        for c in range(num_classes):
            p = precision[t, :, c]
            if not has_truth[c]:
                values.append(float("nan"))
            else:  # a class with truth and no detection at all stays -1 in COCOeval: AP 0
                values.append(float(np.mean(p)) if (p > -1).all() else 0.0)
        per_class[key] = values
        valid = [v for v in values if not np.isnan(v)]
        maps[key] = float(np.mean(valid)) if valid else float("nan")
    return MaskMAP(maps, per_class)


def pointing_and_counting(
    truth: Mapping[int, Instances], predictions: Mapping[int, Instances], score_threshold: float = 0.5
) -> dict[str, float]:
    """Pointing accuracy and counting error of ``predictions`` against ``truth`` (keyed by image id).

    ``pointing_accuracy``: over (image, class with a true instance) pairs, the fraction where the
    best-scoring predicted mask of that class (any score) has its most interior pixel (the maximum of
    its distance transform) inside a true instance of the class; no prediction of the class is a miss.
    ``count_mae``: over (image, class) pairs where the class has a true instance or a kept prediction
    (score >= ``score_threshold``), the mean of |kept predictions - true instances|.
    """
    hits = pairs = 0
    errors: list[int] = []
    for image_id, gt in truth.items():
        pred = predictions.get(image_id)
        gt = Instances(gt.masks[~gt.is_crowd], np.asarray(gt.labels, np.int64)[~gt.is_crowd])
        labels_gt = np.asarray(gt.labels, np.int64)
        labels_pred = np.zeros(0, np.int64) if pred is None else np.asarray(pred.labels, np.int64)
        scores = np.zeros(0) if pred is None else np.asarray(pred.scores, np.float64)
        kept = labels_pred[scores >= score_threshold]
        for c in np.union1d(labels_gt, kept):
            errors.append(abs(int(np.sum(kept == c)) - int(np.sum(labels_gt == c))))
        for c in np.unique(labels_gt):
            pairs += 1
            of_class = np.flatnonzero(labels_pred == c)
            if len(of_class) == 0 or pred is None:
                continue
            best = pred.masks[of_class[np.argmax(scores[of_class])]]
            if not best.any():
                continue
            y, x = np.unravel_index(np.argmax(ndimage.distance_transform_edt(best)), best.shape)
            hits += bool(gt.masks[labels_gt == c][:, y, x].any())
    return {
        "pointing_accuracy": hits / pairs if pairs else float("nan"),
        "count_mae": float(np.mean(errors)) if errors else 0.0,
    }


def _coco_ground_truth(truth: Mapping[int, Instances], num_classes: int) -> COCO:
    images, annotations = [], []
    for image_id, inst in truth.items():
        h, w = inst.masks.shape[1:] if inst.masks.ndim == 3 else (0, 0)
        images.append({"id": int(image_id), "height": int(h), "width": int(w)})
        for mask, label, crowd in zip(inst.masks, inst.labels, inst.is_crowd, strict=True):
            rle = encode_mask(mask)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": int(image_id),
                    "category_id": int(label) + 1,
                    "segmentation": rle,
                    "area": float(mask.sum()),
                    "bbox": _bbox(mask),
                    "iscrowd": int(crowd),
                }
            )
    gt = COCO()
    gt.dataset = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": c + 1, "name": str(c)} for c in range(num_classes)],
    }
    with _quiet():
        gt.createIndex()
    return gt


def _bbox(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


@contextlib.contextmanager
def _quiet():
    """pycocotools prints progress to stdout and trips numpy 2 deprecations; keep both out of the output."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield
