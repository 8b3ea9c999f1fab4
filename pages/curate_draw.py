"""Pure numpy compositing for the Curate page (no streamlit): mask overlays and proposal thumbnails."""

from __future__ import annotations

import cv2
import numpy as np

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
    edge = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)).astype(bool)
    out[edge] = tint
    out = out.astype(np.uint8)
    if point is not None:
        y, x = point
        h, w = mask.shape
        out[max(y - 2, 0) : y + 3, min(max(x, 0), w - 1)] = 255
        out[min(max(y, 0), h - 1), max(x - 2, 0) : x + 3] = 255
    return out


def enlarge(image: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscaling of an HxWxC uint8 image by an integer factor (small images stay crisp)."""
    return np.repeat(np.repeat(image, scale, axis=0), scale, axis=1) if scale > 1 else image


def display_scale(shape: tuple[int, int], target: int = 480) -> int:
    """The integer factor that brings the longer side of ``shape`` closest to ``target`` pixels (>= 1)."""
    return max(1, round(target / max(shape)))
