"""The one adapter for third-party Streamlit components (pinned in requirements.txt).

``clickable_image`` shows a picture that reports where it was clicked, with
``streamlit-image-coordinates``; without that package it falls back to a plain ``st.image`` (the
pages then offer a select box instead of the click). Pages never import a component directly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st

from wsseg.views.overlay import jpeg_bytes

try:
    from streamlit_image_coordinates import streamlit_image_coordinates
except ImportError:  # the plain-widget fallback
    streamlit_image_coordinates = None

CLICKS_AVAILABLE = streamlit_image_coordinates is not None


def new_click(key: str) -> tuple[float, float, float, float] | None:
    """The click on ``clickable_image(..., key)`` not handled yet, as (x, y, shown width, shown
    height) in screen pixels of the picture; None when there is none.

    Call it BEFORE drawing the picture, so the picture can already show what the click chose. A
    click is handled once: the component keeps returning its last click, told apart by its time.
    """
    value: Any = st.session_state.get(key)
    if not value or not {"x", "y", "width", "height"} <= set(value):
        return None
    stamp = value.get("unix_time")
    seen = f"{key}__handled"
    if st.session_state.get(seen) == stamp:
        return None
    st.session_state[seen] = stamp
    return float(value["x"]), float(value["y"]), float(value["width"]), float(value["height"])


def clickable_image(picture: np.ndarray, key: str, caption: str | None = None) -> None:
    """Show HxWx3 uint8 ``picture`` (JPEG) at the column's width; clicks on it arrive through
    ``new_click(key)`` on the next run, in pixels of the picture as shown."""
    if streamlit_image_coordinates is None:
        st.image(jpeg_bytes(picture), caption=caption)
        return
    streamlit_image_coordinates(
        picture, key=key, width="stretch", image_format="JPEG", jpeg_quality=90, cursor="crosshair"
    )
    if caption:
        st.caption(caption)
