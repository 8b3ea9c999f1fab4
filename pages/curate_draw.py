"""Pure numpy compositing for the Curate page (no streamlit): mask overlays and proposal thumbnails."""

from __future__ import annotations

import numpy as np

from wsseg.views.overlay import mask_edge

MASK_COLOUR = (255, 64, 160)
CANDIDATE_COLOUR = (64, 200, 255)


def overlay(
    image: np.ndarray,
    mask: np.ndarray,
    colour: tuple[int, int, int] = MASK_COLOUR,
    alpha: float = 0.45,
    point: tuple[int, int] | None = None,
) -> np.ndarray:
    """HxWx3 uint8 image with an HxW bool mask tinted ``colour`` at ``alpha``, its outline opaque, and an
    optional (y, x) point drawn as a small white cross. Returns a new HxWx3 uint8."""
    out = image.astype(np.float32).copy()
    tint = np.asarray(colour, np.float32)
    out[mask] = (1 - alpha) * out[mask] + alpha * tint
    out[mask_edge(mask)] = tint
    out = out.astype(np.uint8)
    if point is not None:
        y, x = point
        h, w = mask.shape
        out[max(y - 2, 0) : y + 3, min(max(x, 0), w - 1)] = 255
        out[min(max(y, 0), h - 1), max(x - 2, 0) : x + 3] = 255
    return out
