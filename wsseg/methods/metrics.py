"""Metrics that need no model: classification mAP, peak precision, instance recall, counting error.

Pure numpy. Peaks and instances are in input-image pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the precision-recall curve (non-interpolated, as scikit-learn's average_precision_score).

    ``scores``: N float; ``labels``: N in {0, 1}. NaN when there is no positive.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    if labels.sum() == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    scores, labels = scores[order], labels[order]
    # Group ties: precision/recall are only evaluated at the last index of each distinct score.
    distinct = np.r_[np.nonzero(np.diff(scores))[0], len(scores) - 1]
    tp = np.cumsum(labels)[distinct]
    precision = tp / (distinct + 1)
    recall = tp / labels.sum()
    recall_steps = np.diff(np.r_[0.0, recall])
    return float(np.sum(recall_steps * precision))


def mean_average_precision(scores: np.ndarray, labels: np.ndarray) -> tuple[float, list[float]]:
    """Mean over classes of the AP (classes without positives skipped). ``scores``, ``labels``: NxC."""
    per_class = [average_precision(scores[:, c], labels[:, c]) for c in range(scores.shape[1])]
    valid = [ap for ap in per_class if not np.isnan(ap)]
    return (float(np.mean(valid)) if valid else float("nan")), per_class


@dataclass(frozen=True)
class PointStats:
    """Counts behind the peak metrics (summed over images).

    ``peaks_in_instance``: peaks of a present class that fall inside a true instance of that class;
    ``peaks``: peaks of present classes; ``instances_hit``: true instances containing >= 1 peak of their
    class; ``instances``: true instances; ``count_abs_error``: sum over images and present classes of
    |number of peaks - number of instances|; ``count_cases``: number of (image, present class) pairs.
    """

    peaks_in_instance: int = 0
    peaks: int = 0
    instances_hit: int = 0
    instances: int = 0
    count_abs_error: float = 0.0
    count_cases: int = 0

    def __add__(self, other: PointStats) -> PointStats:
        return PointStats(*(a + b for a, b in zip(self._values(), other._values(), strict=True)))

    def _values(self) -> tuple[float, ...]:
        return (
            self.peaks_in_instance,
            self.peaks,
            self.instances_hit,
            self.instances,
            self.count_abs_error,
            self.count_cases,
        )

    @property
    def precision(self) -> float:
        return self.peaks_in_instance / self.peaks if self.peaks else float("nan")

    @property
    def recall(self) -> float:
        return self.instances_hit / self.instances if self.instances else float("nan")

    @property
    def count_mae(self) -> float:
        return self.count_abs_error / self.count_cases if self.count_cases else float("nan")


def point_stats(
    peaks: Sequence[tuple[int, float, float]],
    masks: np.ndarray,
    labels: np.ndarray,
    present: Sequence[int],
) -> PointStats:
    """Score one image's peaks against its true instances.

    ``peaks``: (class index, y, x) in pixels; ``masks``: NxHxW bool; ``labels``: N class indices;
    ``present``: the classes the image is tagged with (only their peaks count, as in PRM's evaluation).
    """
    present_set = set(int(c) for c in present)
    h, w = masks.shape[1:] if len(masks) else (0, 0)
    hits = np.zeros(len(masks), dtype=bool)
    in_instance = 0
    n_peaks = 0
    per_class_peaks: dict[int, int] = {c: 0 for c in present_set}
    for c, y, x in peaks:
        if c not in present_set:
            continue
        n_peaks += 1
        per_class_peaks[c] += 1
        yi, xi = int(round(y)), int(round(x))
        if not (0 <= yi < h and 0 <= xi < w):
            continue
        inside = np.nonzero((labels == c) & masks[:, yi, xi])[0]
        if len(inside):
            in_instance += 1
            hits[inside] = True
    count_error = sum(abs(per_class_peaks[c] - int(np.sum(labels == c))) for c in present_set)
    return PointStats(in_instance, n_peaks, int(hits.sum()), len(masks), float(count_error), len(present_set))


def chance_shares(masks: np.ndarray, labels: np.ndarray, present: Sequence[int]) -> list[float]:
    """What a peak placed uniformly at random would score on one image: for each tagged class with
    true instances, the share of the image its instances cover (the chance that such a peak falls inside
    one). ``masks``: NxHxW bool; ``labels``: N class indices; ``present``: the image's tagged classes."""
    shares = []
    for c in sorted(set(int(c) for c in present)):
        of_class = masks[labels == c]
        if len(of_class):
            shares.append(float(np.any(of_class, axis=0).mean()))
    return shares
