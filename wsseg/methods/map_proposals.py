"""Class-aware proposals: connected components of class response maps (or peak response maps)
thresholded at several levels relative to their maximum, a second source of candidate masks beside
selective search (``wsseg.methods.proposals``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from wsseg.errors import BadInputError
from wsseg.methods.proposals import Proposals, suppress_overlaps


def class_aware_proposals(
    maps: np.ndarray,
    levels: Sequence[float] = (0.2, 0.35, 0.5, 0.65, 0.8),
    dedup_iou: float = 0.9,
    min_pixels: int = 1,
) -> Proposals:
    """Connected components of a CxHxW (or HxW) float map (CRMs or PRMs) thresholded at relative levels.

    Each map is divided by its maximum (maps with no positive value give nothing); every 8-connected
    component of ``map >= level`` with at least ``min_pixels`` pixels is a proposal whose objectness
    is its mean normalised response. Proposals with a better one at IoU above ``dedup_iou`` are dropped.
    """
    maps = np.asarray(maps, np.float32)
    if maps.ndim == 2:
        maps = maps[None]
    if maps.ndim != 3 or not np.isfinite(maps).all():
        raise BadInputError("maps", f"expected a finite CxHxW or HxW array; got shape {maps.shape}")
    if any(not 0.0 < lv <= 1.0 for lv in levels):
        raise BadInputError("levels", f"expected relative levels in (0, 1]; got {tuple(levels)}")
    h, w = maps.shape[1:]
    masks, scores, source, comp, sources = [], [], [], [], []
    for c, response in enumerate(maps):
        top = float(response.max())
        if top <= 0:
            continue
        response = response / top
        for lv in levels:
            components, n = ndimage.label(response >= lv, structure=np.ones((3, 3), bool))
            counts = np.bincount(components.ravel(), minlength=n + 1)
            means = np.bincount(components.ravel(), weights=response.ravel(), minlength=n + 1)
            for k in np.flatnonzero(counts[1:] >= min_pixels) + 1:
                masks.append(components == k)
                scores.append(means[k] / counts[k])
                source.append(len(sources))
                comp.append(k - 1)
            sources.append(f"class {c} level {lv:.2f}")
    if not masks:
        empty = np.zeros(0, np.float32)
        return Proposals(
            np.zeros((0, h, w), bool), empty, np.zeros(0, np.int16), np.zeros(0, np.int32), tuple(sources)
        )
    stack = np.asarray(masks)
    order = np.argsort(-np.asarray(scores), kind="stable")
    flat = stack[order].reshape(len(order), -1)
    weight = np.ones(h * w, np.float32)
    chosen = order[
        suppress_overlaps(lambda i: flat[i].astype(np.float32), len(order), weight, dedup_iou, len(order))
    ]
    return Proposals(
        masks=stack[chosen],
        objectness=np.asarray(scores, np.float32)[chosen],
        source=np.asarray(source, np.int16)[chosen],
        level=np.asarray(comp, np.int32)[chosen],
        sources=tuple(sources),
    )
