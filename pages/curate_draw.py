"""Pure numpy compositing for the Curate page (no streamlit): a mask drawn so it shows on any image."""

from __future__ import annotations

import numpy as np

from wsseg.views.overlay import mask_overlay

#: A fixed colour for the proposals the Learn page tints (the Curate page picks a contrasting one).
CANDIDATE_COLOUR = (64, 200, 255)


def overlay(
    image: np.ndarray,
    mask: np.ndarray,
    colour: tuple[int, int, int] | None = None,
    alpha: float = 0.45,
    point: tuple[int, int] | None = None,
) -> np.ndarray:
    """HxWx3 uint8 image with an HxW bool mask filled ``colour`` at ``alpha`` (default: the colour that
    contrasts most with the image under it) inside a dark and a light outline
    (``wsseg.views.overlay.mask_overlay``), and an optional (y, x) point drawn as a small white cross
    edged in black. Returns a new HxWx3 uint8."""
    out = mask_overlay(image, mask, colour, alpha)
    if point is not None:
        h, w = mask.shape
        y, x = min(max(point[0], 0), h - 1), min(max(point[1], 0), w - 1)
        for shade, reach, half in (((0, 0, 0), 3, 1), ((255, 255, 255), 2, 0)):  # black edge, white cross
            out[max(y - reach, 0) : y + reach + 1, max(x - half, 0) : x + half + 1] = shade
            out[max(y - half, 0) : y + half + 1, max(x - reach, 0) : x + reach + 1] = shade
    return out
