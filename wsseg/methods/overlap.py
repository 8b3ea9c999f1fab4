"""Overlap between sets of masks: pairwise IoU, and how well proposals cover ground-truth instances
(best overlap per instance, ABO and recall at IoU 0.5, Uijlings et al.'s proposal measures)."""

from __future__ import annotations

import numpy as np

from wsseg.errors import BadInputError


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every mask in ``a`` (KxHxW bool) with every mask in ``b`` (NxHxW bool): KxN float64."""
    fa = np.asarray(a, bool).reshape(len(a), -1).astype(np.float32)
    fb = np.asarray(b, bool).reshape(len(b), -1).astype(np.float32)
    inter = (fa @ fb.T).astype(np.float64)
    union = fa.sum(1, dtype=np.float64)[:, None] + fb.sum(1, dtype=np.float64)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def best_overlaps(proposal_masks: np.ndarray, gt_masks: np.ndarray) -> np.ndarray:
    """N float64: for each ground-truth mask (NxHxW bool), its best IoU with a proposal (KxHxW bool)."""
    if len(gt_masks) == 0:
        return np.zeros(0)
    if len(proposal_masks) == 0:
        return np.zeros(len(gt_masks))
    if proposal_masks.shape[1:] != gt_masks.shape[1:]:
        raise BadInputError(
            "masks",
            f"proposals {proposal_masks.shape[1:]} and ground truth {gt_masks.shape[1:]} differ in size",
        )
    return mask_iou(gt_masks, proposal_masks).max(axis=1)


def average_best_overlap(proposal_masks: np.ndarray, gt_masks: np.ndarray) -> tuple[float, float]:
    """(ABO, recall at IoU 0.5) of KxHxW bool proposals against NxHxW bool ground truth; nan if N = 0.

    Over a dataset, pool :func:`best_overlaps` of every image instead of averaging per-image values.
    """
    best = best_overlaps(np.asarray(proposal_masks, bool), np.asarray(gt_masks, bool))
    if len(best) == 0:
        return float("nan"), float("nan")
    return float(best.mean()), float((best >= 0.5).mean())
