"""CAMs and peaks page: each class's response map on the image, its peaks numbered, and the peak
response map of the peak you click, beside the CAM it came from.

Maps come from the newest peaks run (``wsseg peaks``) or are computed by the trained classifier;
the viewer is an ``st.fragment``, so moving a control reruns only the viewer, on the cached maps.
"""

from __future__ import annotations

import time

import numpy as np
import streamlit as st

from pages.cached import maps as _maps
from pages.cached import prm as _prm
from pages.cam_methods import VIEWS
from pages.common import current_project, peak_filter_sliders, skipped_note, tag_filter
from pages.components import CLICKS_AVAILABLE, clickable_image, new_click
from pages.hints import missing_step
from wsseg.methods.prm import METHODS
from wsseg.models.peaks import FILTERS
from wsseg.stages.classifier_summary import never_predicted_warning, summary_rows
from wsseg.stages.recipes import INFERENCE_PEAKS
from wsseg.views.cam import (
    ImageMaps,
    PeakSettings,
    checkpoint_path,
    class_heat,
    class_peaks,
    classifier_summary,
    peak_label,
    shown_peaks,
)
from wsseg.views.overlay import (
    COLORMAPS,
    OverlayStyle,
    colour_bar,
    greyed,
    jpeg_bytes,
    nearest_peak,
    overlay_view,
    prm_heat,
)

CLICK_KEY = "cam_click"
WINDOWS = [1, 3, 5, 7, 9]


def _class_label(name: str, score: float, tagged: bool) -> str:
    return f"{name} · {'tagged' if tagged else 'absent'} · score {score:+.2f}"


def _bar(colormap: str, ticks: tuple[str, ...], caption: str, width: int | str = "stretch") -> None:
    """A colour bar (what the colours of the map above it mean) with its scale in words."""
    st.image(colour_bar(colormap, 480, 14, ticks), caption=caption, width=width)


def _cam_scale(maps: ImageMaps, class_index: int, shared: bool) -> tuple[tuple[str, ...], str]:
    """Ticks and words of a CAM's colour scale (``class_heat``: the map over its top, negatives 0)."""
    top = float(maps.crm.max() if shared else maps.crm[class_index].max())
    whose = "the strongest response of any class on this image" if shared else "this class's own maximum here"
    if top <= 0:
        return ("0", "1"), "No positive response anywhere: the map shows nothing."
    return (
        ("0", f"0.5 = {top / 2:.2g}", f"1 = {top:.2g}"),
        f"Colour scale: 0 = no response, or evidence against the class (negative scores are shown as 0) · "
        f"1 = {whose} (raw score {top:.2g}); linear in between.",
    )


@st.fragment
def viewer(root: str, image_id: int, stamp: tuple, classes: list[str], tags: tuple[str, ...]) -> None:
    started = time.perf_counter()
    maps = _maps(root, image_id, stamp)
    scores = maps.class_scores
    labels = [_class_label(c, float(scores[k]), c in tags) for k, c in enumerate(classes)]
    first = next((k for k, c in enumerate(classes) if c in tags), int(np.argmax(scores)))

    row = st.columns([3, 2, 2, 2])
    class_index = row[0].selectbox(
        "Class", range(len(classes)), index=first, format_func=labels.__getitem__, key="cam_class"
    )
    colormap = row[1].selectbox("Colormap", list(COLORMAPS), key="cam_colormap")
    opacity = row[2].slider("Opacity", 0.0, 1.0, 0.55, 0.05, key="cam_opacity")
    shared = row[3].toggle("One scale for all classes", value=True, key="cam_shared")
    row = st.columns([2, 2, 3, 2, 2, 2])
    default = PeakSettings()
    window = row[0].selectbox("Peak window", WINDOWS, index=WINDOWS.index(default.window), key="cam_window")
    peak_filter = row[1].selectbox(
        "Peak filter", FILTERS, index=FILTERS.index(default.peak_filter), key="cam_filter"
    )
    relative, smooth = peak_filter_sliders(row[2], row[3], default, "cam")
    positive = row[4].toggle(
        "Positive peaks only", value=default.peak_threshold is not None, key="cam_positive"
    )
    methods = list(METHODS)
    method = row[5].selectbox(
        "PRM method", methods, index=methods.index(INFERENCE_PEAKS.method), key="cam_method"
    )

    settings = PeakSettings(
        window=window,
        peak_filter=peak_filter,
        relative_threshold=relative,
        peak_threshold=0.0 if positive else None,
        smooth=smooth,
    )
    found = shown_peaks(class_peaks(maps, settings, class_index))
    peaks = found.peaks  # drawn and listed alike: peak k is numbered k + 1 everywhere
    points = [(p.y, p.x) for p in peaks]
    options = [peak_label(k + 1, p) for k, p in enumerate(peaks)]

    click = new_click(CLICK_KEY)
    if click is not None and peaks:
        hit = nearest_peak(click[:2], click[2:], maps.image.shape[:2], points, max_distance=16.0)
        if hit is not None:
            st.session_state["cam_peak"] = options[hit]
    if st.session_state.get("cam_peak") not in options:
        st.session_state["cam_peak"] = options[0] if options else None
    chosen = options.index(st.session_state["cam_peak"]) if options else None

    style = OverlayStyle(opacity=opacity, colormap=colormap)
    left, right = st.columns(2)
    with left:
        st.markdown(f"**CAM of {classes[class_index]}** · {found.total} peak(s)")
        picture = overlay_view(maps.image, class_heat(maps, class_index, shared), style, points, chosen)
        clickable_image(
            picture, CLICK_KEY, caption="Click a numbered peak to see its PRM." if CLICKS_AVAILABLE else None
        )
        if found.note:
            st.caption(f"Drawn and listed: {found.note}.")
        _bar(colormap, *_cam_scale(maps, class_index, shared))
    with right:
        if not peaks:
            st.markdown("**PRM**")
            st.info("No peak passes these settings for this class: lower the threshold or change the filter.")
        else:
            st.selectbox("Peak", options, key="cam_peak")
            peak = peaks[chosen]
            prm, origin = _prm(root, image_id, stamp, settings, peak, method)
            st.markdown(f"**PRM of peak {chosen + 1}** ({method})")
            if prm is None:
                st.warning(f"No PRM for this peak: {origin}.")
            else:
                heat, scale = prm_heat(prm)
                number = str(chosen + 1)
                backdrop = greyed(maps.image)  # the photo in grey, so the map's colours stand out
                st.image(
                    jpeg_bytes(overlay_view(backdrop, heat, style, [points[chosen]], 0, labels=[number])),
                    caption=f"{origin} · drawn over the image in grey",
                    width="stretch",
                )
                _bar(colormap, scale.ticks, f"Colour scale of the PRM: {scale.text}.")

    with st.expander(
        "Every class, tagged or absent (the same scale shows how weak absent classes are)", expanded=True
    ):
        strip = st.columns(len(classes))
        small = OverlayStyle(opacity=opacity, colormap=colormap)
        for k, col in enumerate(strip):
            col.image(
                jpeg_bytes(overlay_view(maps.image, class_heat(maps, k, shared), small, target=200)),
                caption=labels[k],
            )
        if shared:
            _bar(colormap, *_cam_scale(maps, 0, True), width=480)  # one scale: the strongest class map
        else:
            each = "Colour scale: each map over its own maximum (1); 0 = no response."
            _bar(colormap, ("0", "0.5", "1"), each, width=480)
    st.caption(f"Viewer rendered in {(time.perf_counter() - started) * 1000:.0f} ms on the server.")


st.title("CAMs and peaks")
project = current_project()
if project is None:
    st.stop()
view = st.segmented_control("View", list(VIEWS), default=list(VIEWS)[0], key="cam_view")
if VIEWS.get(view) is not None:
    VIEWS[view](project)
    st.stop()
root = str(project.root)
ckpt = checkpoint_path(project)
peak_runs = [r.id for r in project.runs("peaks") if r.status == "done"]
if not ckpt.is_file() and not peak_runs:
    missing_step(
        "The class response maps come from the trained classifier, and this project has none yet: "
        "run the Classifier step (then Peaks and PRMs) of the pipeline."
    )
    st.stop()
stamp = (ckpt.stat().st_mtime if ckpt.is_file() else 0.0, max(peak_runs, default=0))

tag, untagged, total = tag_filter(project, key="cam_tag")
if total == 0:
    st.info("No image matches this filter.")
    st.stop()
number = st.number_input(f"Image (1 to {total})", min_value=1, max_value=total, value=1, key="cam_image")
record = project.images(tag=tag, untagged=untagged, offset=number - 1, limit=1)[0]
maps = _maps(root, record.id, stamp)
if maps is None:
    st.warning(f"{record.filename}: no peaks run holds it and there is no classifier to compute its maps.")
    st.stop()
classes = project.classes()[: len(maps.class_scores)]
if summary := classifier_summary(project):
    if warning := never_predicted_warning(summary):
        st.warning(warning)
    with st.expander(
        f"What the classifier learnt, per class ({summary['images']} {summary['split']} images)"
    ):
        st.dataframe(summary_rows(summary), hide_index=True, width="stretch")
st.caption(
    f"**{record.filename}** · tags: {', '.join(record.tags) or 'none'} · maps {maps.source} · "
    f"CRM {maps.crm.shape[1]}x{maps.crm.shape[2]}, stride {maps.stride}"
)
skipped_note([project.latest_run("peaks")])
viewer(root, record.id, stamp, classes, record.tags)
