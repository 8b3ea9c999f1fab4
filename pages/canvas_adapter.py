"""The one place the Curate page touches third-party Streamlit components (STYLE 10).

- ``draw_stroke``: a freehand brush over an image through ``streamlit-drawable-canvas`` (pinned in
  requirements.txt); fallback: a rectangle given with four sliders.
- ``click_point``: a click on an image through ``streamlit-image-coordinates`` (pinned); fallback:
  two number inputs and a button.

Both return plain values in image pixels, so the page never sees a component's own format. The
fallback is used when the component cannot be imported, or when ``WSSEG_PLAIN_WIDGETS`` is set (headless
tests run the plain widgets).
"""

from __future__ import annotations

import os

import cv2
import numpy as np
import streamlit as st
from PIL import Image


def _component(name: str):
    """The component ``name`` ("canvas" or "coordinates"), or None for the plain widgets.

    Imported here, not at the top: the canvas registers itself with the Streamlit runtime on import,
    which fails outside a running app (the unit tests import this module)."""
    if os.environ.get("WSSEG_PLAIN_WIDGETS"):
        return None
    try:
        if name == "canvas":
            from streamlit_drawable_canvas import st_canvas

            return st_canvas
        from streamlit_image_coordinates import streamlit_image_coordinates

        return streamlit_image_coordinates
    except ImportError:
        return None


def canvas_to_stroke(rgba: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray | None:
    """A canvas's HxWx4 uint8 RGBA drawing -> the painted pixels as an HxW bool of ``shape`` (None when
    nothing is drawn). The canvas may be larger than the image: it is resized (nearest) to ``shape``."""
    if rgba is None or rgba.ndim != 3 or rgba.shape[2] != 4:
        return None
    alpha = (rgba[..., 3] > 0).astype(np.uint8)
    if not alpha.any():
        return None
    return cv2.resize(alpha, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST).astype(bool)


def rectangle_stroke(shape: tuple[int, int], y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """HxW bool with the rectangle [y0, y1) x [x0, x1) set."""
    stroke = np.zeros(shape, bool)
    stroke[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = True
    return stroke


def draw_stroke(
    image: np.ndarray,
    key: str,
    brush: int = 8,
    scale: int = 3,
    colour: str = "rgba(255, 0, 255, 0.8)",
) -> np.ndarray | None:
    """Let the user paint over ``image`` (HxWx3 uint8: the canvas's starting picture, e.g. the current
    mask drawn on the photo) with a brush of CSS ``colour``; return the painted pixels as HxW bool, or
    None."""
    h, w = image.shape[:2]
    canvas = _component("canvas")
    if canvas is not None:
        result = canvas(
            background_image=Image.fromarray(image).resize((w * scale, h * scale), Image.NEAREST),
            stroke_width=brush * scale,
            stroke_color=colour,
            width=w * scale,
            height=h * scale,
            drawing_mode="freedraw",
            return_image_data=True,
            key=key,
        )
        try:
            return canvas_to_stroke(result.image_data if result is not None else None, (h, w))
        except RuntimeError:
            return None
    st.caption("A rectangle (the drawing canvas is not available here).")
    c1, c2 = st.columns(2)
    ys = c1.slider("rows", 0, h, (h // 4, h // 2), key=f"{key}_rows")
    xs = c2.slider("columns", 0, w, (w // 4, w // 2), key=f"{key}_cols")
    return rectangle_stroke((h, w), ys[0], ys[1], xs[0], xs[1])


def click_point(image: np.ndarray, key: str, scale: int = 3) -> tuple[int, int] | None:
    """Let the user click a pixel of ``image`` (HxWx3 uint8); return it as (y, x), or None."""
    h, w = image.shape[:2]
    clicker = _component("coordinates")
    if clicker is not None:
        big = np.asarray(Image.fromarray(image).resize((w * scale, h * scale), Image.NEAREST))
        value = clicker(big, key=key, cursor="crosshair")
        if not value:
            return None
        width = value.get("width") or w * scale
        height = value.get("height") or h * scale
        y, x = int(value["y"] * h / height), int(value["x"] * w / width)
        return min(max(y, 0), h - 1), min(max(x, 0), w - 1)
    c1, c2 = st.columns(2)
    y = c1.number_input("row (y)", 0, h - 1, h // 2, key=f"{key}_y")
    x = c2.number_input("column (x)", 0, w - 1, w // 2, key=f"{key}_x")
    return int(y), int(x)
