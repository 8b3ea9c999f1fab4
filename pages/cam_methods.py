"""The CAMs page's two other views: every CAM method side by side on one image (of the project, or a
photo uploaded here), and their score card against the project's ground truth.

The maps come from ``wsseg.methods.cams`` (grad-cam's methods and PRM's class response map), the
comparison from ``wsseg.views.cam_compare``, the score card from ``wsseg.stages.score_cams`` (the same
as ``wsseg cams``).
"""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

from pages.common import peak_filter_sliders, tag_filter
from wsseg.data.images import content_hash
from wsseg.errors import WssegError
from wsseg.methods.cams import LABELS, available
from wsseg.stages.make_peaks import prepare_image
from wsseg.stages.score_cams import FIGURES, best_pointing, score_cams
from wsseg.store.importer import ground_truth
from wsseg.store.project import Project
from wsseg.store.weights import WEIGHTS_DIR
from wsseg.views.cam import PeakSettings
from wsseg.views.cam_compare import (
    PROJECT_PREFIX,
    MethodMap,
    OpenedModel,
    classifier_options,
    layer_channels,
    method_map,
    open_model,
    read_upload,
    top_classes,
    with_peaks,
)
from wsseg.views.overlay import COLORMAPS, OverlayStyle, colour_bar, greyed, jpeg_bytes, overlay_view

UPLOAD_TYPES = ["png", "jpg", "jpeg", "bmp", "tif", "tiff", "webp"]
COLUMNS = 4
#: The score card's figures as the table and the chart name them.
NAMES = {
    "pointing": "pointing",
    "peak_precision": "peak precision",
    "instance_recall": "instance recall",
    "miou": "mIoU",
    "pseudo_map50": "pseudo mAP50",
    "seconds_per_image": "s / image",
}


@st.cache_resource(max_entries=6, show_spinner="Loading the classifier…")
def _opened(root: str, option: str, stamp: float) -> OpenedModel:
    """The classifier of ``option``; ``stamp`` (the checkpoints folder's mtime) reloads a retrained one."""
    return open_model(Project(root), option)


@st.cache_resource(max_entries=256, show_spinner=False)
def _map(
    root: str,
    option: str,
    stamp: float,
    image_key: str,
    _image: np.ndarray,
    class_index: int,
    method: str,
    layer: str,
) -> MethodMap:
    """One method's map of the image ``image_key`` (cached: moving a colour or peak control redraws it
    only)."""
    return method_map(_opened(root, option, stamp), _image, class_index, method, layer)


def _stamp(project: Project) -> float:
    folder = project.root / "checkpoints"
    return folder.stat().st_mtime if folder.exists() else 0.0


def _choose_classifier(
    project: Project, key: str, project_only: bool = False
) -> tuple[str, OpenedModel] | None:
    options = classifier_options(project)
    if project_only:
        options = [o for o in options if o.startswith(PROJECT_PREFIX)]
    if not options:
        st.info(
            "No classifier to read maps from: train the project's classifier (Train page or the pipeline)"
            + (
                ""
                if project_only
                else f", or put a torchvision ImageNet classifier's weights file in the project's `{WEIGHTS_DIR}/` "
                "folder (or its torchvision weights in torch's cache)"
            )
            + "."
        )
        return None
    option = st.selectbox("Classifier", options, key=key)
    try:
        return option, _opened(str(project.root), option, _stamp(project))
    except WssegError as error:
        st.error(f"This classifier cannot be opened: {error}")
        return None


def _image_source(
    project: Project, opened: OpenedModel
) -> tuple[str, np.ndarray, tuple[str, ...], str] | None:
    """(cache key, image as the classifier sees it, its tags, caption), from the project or an upload."""
    source = st.radio("Image", ["From the project", "Upload a photo"], horizontal=True, key="cmp_source")
    if source == "Upload a photo":
        upload = st.file_uploader("A photo that is not in the project", type=UPLOAD_TYPES, key="cmp_upload")
        if upload is None:
            st.info("Choose a photo: its maps appear at once (it is not added to the project).")
            return None
        data = upload.getvalue()
        try:
            image = read_upload(data, upload.name, opened.size)
        except WssegError as error:
            st.error(str(error))
            return None
        return f"upload:{content_hash(data)}", image, (), f"**{upload.name}** (uploaded, not in the project)"
    left, right = st.columns([2, 3])
    tag, untagged, total = tag_filter(project, key="cmp_tag", column=left)
    if total == 0:
        st.info("No image matches this filter.")
        return None
    number = right.number_input(
        f"Image (1 to {total})", min_value=1, max_value=total, value=1, key="cmp_image"
    )
    record = project.images(tag=tag, untagged=untagged, offset=number - 1, limit=1)[0]
    image, _ = prepare_image(project, record, opened.size)
    tags = ", ".join(record.tags) or "none"
    return f"image:{record.id}", image, tuple(record.tags), f"**{record.filename}** · tags: {tags}"


@st.cache_resource(max_entries=64, show_spinner=False)
def _top(root: str, option: str, stamp: float, image_key: str, _image: np.ndarray) -> list[tuple[int, float]]:
    """The classifier's five best classes on the image ``image_key`` (one forward pass, once)."""
    opened = _opened(root, option, stamp)
    return top_classes(opened, _image, count=min(5, len(opened.model.classes)))


@st.cache_resource(max_entries=32, show_spinner=False)
def _channels(root: str, option: str, stamp: float, layer: str) -> int:
    """Channels of a layer of the classifier (a forward pass on a blank image, once)."""
    return layer_channels(_opened(root, option, stamp), layer)


def _class_choice(
    option: str, opened: OpenedModel, ranked: list[tuple[int, float]], tags: tuple[str, ...]
) -> int:
    classes = opened.model.classes
    scores = dict(ranked)
    if opened.is_project:
        order = list(range(len(classes)))
        first = next((k for k, c in enumerate(classes) if c in tags), ranked[0][0])
    else:  # 1000 ImageNet classes: the classifier's five best first
        order = [k for k, _ in ranked] + [k for k in range(len(classes)) if k not in scores]
        first = ranked[0][0]

    def label(k: int) -> str:
        mark = " · tagged" if classes[k] in tags else ""
        score = f" · score {scores[k]:+.2f}" if k in scores else ""
        return f"{classes[k]}{mark}{score}"

    # one widget per classifier: class k of one is not class k of another (the box showed the old name)
    return st.selectbox(
        "Class", order, index=order.index(first), format_func=label, key=f"cmp_class_{option}"
    )


def compare_view(project: Project) -> None:
    """Every chosen method's map of one image and class, side by side, on one colour scale."""
    chosen = _choose_classifier(project, "cmp_classifier")
    if chosen is None:
        return
    option, opened = chosen
    st.caption(
        f"{opened.model.source} · {len(opened.model.classes)} classes · maps on a grid of stride {opened.model.stride}"
    )
    picked = _image_source(project, opened)
    if picked is None:
        return
    image_key, image, tags, caption = picked
    st.caption(caption)
    row = st.columns([3, 3, 2])
    with row[0]:
        ranked = _top(str(project.root), option, _stamp(project), image_key, image)
        class_index = _class_choice(option, opened, ranked, tags)
    methods_offered = available(opened.model)
    default = [m for m in methods_offered if m != "scorecam"]
    methods = row[1].multiselect(
        "Methods", methods_offered, default=default, format_func=LABELS.get, key="cmp_methods"
    )
    layers = list(opened.model.layers)
    layer = row[2].selectbox("Layer", layers, index=layers.index(opened.model.default_layer), key="cmp_layer")
    row = st.columns([2, 2, 3, 2, 2])
    default_peaks = PeakSettings()
    window = row[0].selectbox("Peak window", [1, 3, 5, 7, 9], index=1, key="cmp_window")
    relative, smooth = peak_filter_sliders(row[2], row[3], default_peaks, "cmp")
    colormap = row[1].selectbox("Colormap", list(COLORMAPS), key="cmp_colormap")
    opacity = row[4].slider("Opacity", 0.0, 1.0, 0.55, 0.05, key="cmp_opacity")
    settings = PeakSettings(window=window, relative_threshold=relative, smooth=smooth, peak_threshold=0.0)
    if "scorecam" not in methods:
        channels = _channels(str(project.root), option, _stamp(project), layer)
        st.caption(
            f"Score-CAM is off by default: it runs one forward pass per channel of the layer ({channels} here)."
        )
    if not methods:
        st.info("Choose at least one method.")
        return
    style = OverlayStyle(opacity=opacity, colormap=colormap)
    started = time.perf_counter()
    backdrop = greyed(image)  # the photo in grey, so the maps' colours stand out
    root, stamp = str(project.root), _stamp(project)
    for start in range(0, len(methods), COLUMNS):
        columns = st.columns(COLUMNS)
        for column, method in zip(columns, methods[start : start + COLUMNS], strict=False):
            with column, st.spinner(f"{LABELS[method]}…"):
                found = _map(root, option, stamp, image_key, image, class_index, method, layer)
            found = with_peaks(found, opened, class_index, settings)
            if found.heat is None:
                column.warning(f"{found.label}: {found.error}")
                continue
            points = [(p.y, p.x) for p in found.peaks[:20]]
            column.image(
                jpeg_bytes(overlay_view(backdrop, found.heat, style, points, target=320)),
                caption=f"{found.label} · {found.seconds:.2f} s · {len(found.peaks)} peak(s)",
                width="stretch",
            )
    st.image(
        colour_bar(colormap, 480, 14, ("0 = the map's lowest", "1 = its highest")),
        caption="One colour scale for every map: each method's map over its own range (0 to 1), so the maps "
        "compare by where they point, not by their raw values; drawn over the image in grey. Numbered discs: the map's peaks, strongest "
        "first, found alike on every map (the classifier's grid, this window, threshold and smoothing).",
        width=480,
    )
    st.caption(
        f"Drawn in {(time.perf_counter() - started) * 1000:.0f} ms on the server (a method's map is computed "
        "once, its time shown under it, then cached: colour and peak controls only redraw)."
    )


def _splits_with_truth(project: Project) -> list[str]:
    gt = ground_truth(project)
    if gt is None:
        return []
    with_truth = {r.split for r in project.images() if gt.instances.get(r.id)}
    return sorted(with_truth)


def score_view(project: Project) -> None:
    """The methods' score card on the project's images with true masks: a table and a bar chart."""
    splits = _splits_with_truth(project)
    if not splits:
        st.info(
            "A score card needs true masks: this project has none. Import a dataset with masks (COCO, VOC, or a "
            "folder with masks; Data page) to score the methods against them."
        )
        return
    chosen = _choose_classifier(project, "card_classifier", project_only=True)
    if chosen is None:
        return
    _, opened = chosen
    row = st.columns([4, 2, 2, 2])
    offered = available(opened.model)
    methods = row[0].multiselect(
        "Methods", offered, default=offered, format_func=LABELS.get, key="card_methods"
    )
    split = row[1].selectbox(
        "Split", splits, index=splits.index("val") if "val" in splits else 0, key="card_split"
    )
    images = int(row[2].number_input("Images (at most)", 1, 500, 10, key="card_images"))
    layers = list(opened.model.layers)
    layer = row[3].selectbox(
        "Layer", layers, index=layers.index(opened.model.default_layer), key="card_layer"
    )
    st.caption(
        "Each method's maps of the tagged classes, scored as the bench scores the class response map: pointing "
        "(the map's maximum inside a true instance of its class), peak precision and instance recall of its "
        "peaks, mIoU of the map at its best threshold, and the mask mAP50 of the pseudo masks made when its "
        "peaks pick the proposals (the highest-objectness proposal holding each peak). Same as `wsseg cams`."
    )
    if st.button("Score the methods", type="primary", disabled=not methods, key="card_run"):
        bar = st.progress(0.0, text="Scoring…")

        def progress(done: int, total: int) -> None:
            bar.progress(done / total, text=f"Scored {done} of {total} images")

        try:
            card = score_cams(
                project,
                opened.model,
                methods,
                split,
                images,
                layer,
                opened.size,
                opened.peaks,
                progress=progress,
            )
        except WssegError as error:
            st.error(str(error))
            return
        st.session_state["card"] = card
    card = st.session_state.get("card")
    if not card:
        return
    rows = [
        {"method": row["label"], **{NAMES[k]: row[k] for k in FIGURES}, "best threshold": row["threshold"]}
        for row in card["methods"].values()
    ]
    table = pd.DataFrame(rows)
    st.markdown(
        f"**{card['images']} images** of split {card['split']!r} · layer `{card['layer']}` · "
        f"points best: **{LABELS[best_pointing(card)]}**"
    )
    st.dataframe(table, hide_index=True, width="stretch")
    long = table.melt(
        id_vars="method",
        value_vars=[NAMES[k] for k in FIGURES if k != "seconds_per_image"],
        var_name="figure",
    )
    chart = px.bar(long, x="figure", y="value", color="method", barmode="group", range_y=[0, 1])
    chart.update_layout(height=360, margin={"t": 20, "b": 10}, legend_title_text="")
    st.plotly_chart(chart, width="stretch")
    st.download_button("Download the score card (JSON)", json.dumps(card, indent=2), "cams-score-card.json")


VIEWS = {
    "One classifier's CAMs and PRMs": None,
    "Compare CAM methods": compare_view,
    "Score card against the truth": score_view,
}
