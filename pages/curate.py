"""Curate page: review the pseudo masks most likely wrong first, fix them, and export the curated set.

Every button writes to the project database at once (``wsseg.curation.queue``), so a decision survives a
browser reload and a second session sees it. Keyboard shortcuts: A accept, X reject (R and C are Streamlit's own), F flag, N next,
P previous, U undo, Y redo (Streamlit's own ``st.button(shortcut=...)``).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from pages import canvas_adapter
from pages.common import current_project, show_error
from pages.curate_draw import overlay
from pages.hints import missing_step
from wsseg.curation import queue as curation
from wsseg.curation.export import export_curated_coco, export_curated_voc
from wsseg.data.coco import decode_rle
from wsseg.data.images import read_image
from wsseg.errors import WssegError
from wsseg.store.project import Project
from wsseg.views.overlay import contrasting_colour, display_scale, enlarge
from wsseg.views.retrieval import describe_proposal

FILTERS = {
    "to review (proposed or flagged)": lambda item: item.status == "proposed" or item.flagged,
    "all": lambda item: True,
    "accepted": lambda item: item.status == "accepted",
    "edited": lambda item: item.status == "edited",
    "rejected": lambda item: item.status == "rejected",
    "flagged": lambda item: item.flagged,
}
PAGE_SIZE = 15


@st.cache_data(max_entries=64, show_spinner=False)
def _image(path: str, mtime: float) -> np.ndarray:
    return read_image(path)


def _pick_current(order: list[int], shown: list[int]) -> int | None:
    """The mask to show: the remembered one while it is in ``shown``, else the next of ``shown`` after it in
    the queue ``order`` (wrapping), else None."""
    current = st.session_state.get("curate_mask")
    if current in shown:
        return current
    if not shown:
        return None
    if current in order:
        position = order.index(current)
        later = [m for m in shown if order.index(m) > position]
        if later:
            return later[0]
    return shown[0]


def _act(project: Project, function, *args, advance: bool = False, shown: list[int] | None = None) -> None:
    """Run one action; show a conflict as a message; rerun so everything shows the database's state."""
    try:
        function(project, *args, author=st.session_state.get("curate_author", ""))
    except WssegError as error:
        st.session_state["curate_error"] = str(error)
    current = st.session_state.get("curate_mask")
    if advance and shown:
        st.session_state.pop("curate_keep", None)
        if current in shown and shown.index(current) + 1 < len(shown):
            st.session_state["curate_mask"] = shown[shown.index(current) + 1]
    else:  # stay on the mask just changed, even when the filter no longer shows it
        st.session_state["curate_keep"] = current
    st.rerun()


def _undo_redo(project: Project, function) -> None:
    try:
        mask_id = function(project, author=st.session_state.get("curate_author", ""))
        if mask_id is None:
            st.session_state["curate_error"] = f"nothing to {function.__name__}"
        else:
            st.session_state["curate_mask"] = mask_id
    except WssegError as error:
        st.session_state["curate_error"] = str(error)
    st.rerun()


st.title("Curate")
project = current_project()
if project is None:
    st.stop()
runs = [r for r in project.runs(curation.STAGE) if r.status == "done"]
if not runs:
    missing_step("No pseudo masks yet: run the pipeline up to its Pseudo masks step first.")
    st.stop()

top = st.columns([2, 2, 2])
by_id = {r.id: r for r in runs}
run = by_id[
    top[0].selectbox(
        "Pseudo-masks run",
        list(by_id),
        format_func=lambda r: f"run {r} ({curation.run_strategy(by_id[r])})",
        key="curate_run",
    )
]
top[1].text_input("Annotator", value="annotator", key="curate_author")
choice = top[2].selectbox("Show", list(FILTERS), key="curate_filter")

queue = curation.review_queue(project, run.id)
order = [item.mask_id for item in queue]
keep = st.session_state.get("curate_keep")
shown_items = [item for item in queue if FILTERS[choice](item) or item.mask_id == keep]
shown = [item.mask_id for item in shown_items]
statuses = pd.Series([item.status for item in queue]).value_counts().to_dict() if queue else {}
flagged = sum(item.flagged for item in queue)
other = curation.other_strategy_run(project, run)
st.caption(
    f"{len(queue)} automatic masks, most likely wrong first · "
    + " · ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
    + f" · {flagged} flagged · {len(shown)} shown · disagreement against "
    + (f"run {other.id} ({curation.run_strategy(other)})" if other else "no run of the other strategy")
)
if message := st.session_state.pop("curate_error", None):
    st.warning(message)

with st.expander("Queue", expanded=False):
    pages = max(1, -(-len(shown_items) // PAGE_SIZE))
    page = st.number_input("Page", 1, pages, 1, key="curate_page") - 1
    rows = [
        {
            "mask": item.mask_id,
            "image": item.image_id,
            "class": item.class_name,
            "status": item.status,
            "flagged": item.flagged,
            "error": round(item.error, 3),
            **{f"u_{k}": round(v, 3) for k, v in item.terms.items()},
        }
        for item in shown_items[page * PAGE_SIZE : (page + 1) * PAGE_SIZE]
    ]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    jump = st.selectbox("Open mask", [None, *shown], key="curate_jump")
    if jump is not None and st.button("Open", key="curate_open"):
        st.session_state["curate_mask"] = jump
        st.session_state.pop("curate_keep", None)
        st.rerun()

current = _pick_current(order, shown)
st.session_state["curate_mask"] = current
if current is None:
    st.success("Nothing left to review in this view.")
else:
    item = shown_items[shown.index(current)]
    mask = curation.mask_row(project, current)
    record = project.image(mask["image_id"])
    path = project.image_path(record)
    image = _image(str(path), path.stat().st_mtime)
    binary = decode_rle(mask["rle"])
    scale = display_scale(binary.shape, 480)
    point = mask["lineage"].get("point")
    colour = contrasting_colour(image, binary)  # one colour for this mask, here and on the canvas
    shown_mask = overlay(image, binary, colour)
    left, right = st.columns([3, 2])
    left.image(
        enlarge(overlay(image, binary, colour, point=tuple(point) if point else None), scale),
        caption=f"mask {current} · {mask['class_name']} · {record.filename}",
    )
    with right:
        st.markdown(
            f"**#{shown.index(current) + 1} of {len(shown)}** · status **{mask['status']}**"
            + (" · ⚑ flagged" if mask["flagged"] else "")
            + f" · version {mask['version']}"
        )
        st.markdown(
            f"estimated error **{item.error:.2f}** — margin {item.terms['margin']:.2f} "
            f"(best vs second score {item.relative_margin:.2f}), confidence {item.terms['confidence']:.2f} "
            f"(peak value {item.peak_value:.3g})"
            + (
                f", disagreement {item.terms['disagreement']:.2f} (IoU with the other strategy {item.strategy_iou:.2f})"
                if item.strategy_iou is not None
                else ", no other strategy to compare"
            )
        )
        version = mask["version"]
        # Three buttons a row, each filling its column: four a row cut "Accept" short beside the picture.
        b = st.columns(3)
        if b[0].button("Accept", key="curate_accept", shortcut="a", type="primary", width="stretch"):
            _act(project, curation.accept, current, version, advance=True, shown=shown)
        if b[1].button("Reject", key="curate_reject", shortcut="x", width="stretch"):
            _act(project, curation.reject, current, version, advance=True, shown=shown)
        flag = "Unflag" if mask["flagged"] else "Flag"
        if b[2].button(flag, key="curate_flag", shortcut="f", width="stretch"):
            _act(project, curation.flag, current, version, not mask["flagged"])
        c = st.columns(3)
        if c[0].button("Previous", key="curate_prev", shortcut="p", width="stretch"):
            st.session_state["curate_mask"] = shown[(shown.index(current) - 1) % len(shown)]
            st.session_state.pop("curate_keep", None)
            st.rerun()
        if c[1].button("Next", key="curate_next", shortcut="n", width="stretch"):
            position = shown.index(current)
            st.session_state["curate_mask"] = shown[(position + 1) % len(shown)]
            st.session_state.pop("curate_keep", None)
            st.rerun()
        if c[2].button("Undo", key="curate_undo", shortcut="u", width="stretch"):
            _undo_redo(project, curation.undo)
        d = st.columns(3)
        if d[0].button("Redo", key="curate_redo", shortcut="y", width="stretch"):
            _undo_redo(project, curation.redo)
        st.caption("Shortcuts: A accept · X reject · F flag · N next · P previous · U undo · Y redo")

    ranked = mask["lineage"].get("ranked", [])
    if ranked:
        st.subheader("Ranked proposals")
        cols = st.columns(len(ranked))
        for k, (col, entry) in enumerate(zip(cols, ranked, strict=True)):
            try:
                candidate = decode_rle(curation.proposal_rle(project, mask, k))
            except WssegError as error:
                col.caption(str(error))
                continue
            col.image(enlarge(overlay(image, candidate), max(1, scale // 2)))
            words = describe_proposal({"area": int(candidate.sum()), **entry}, image_area=binary.size)
            col.caption(f"#{k} (proposal {entry['proposal']}, score {entry['score']:.3g}): {words}")
            same = bool((candidate == binary).all())
            if col.button("In use" if same else f"Use #{k}", key=f"curate_swap_{k}", disabled=same):
                _act(project, curation.swap, current, version, k)

    with st.expander("Paint or erase"):
        mode = st.radio("Brush", ["paint", "erase"], horizontal=True, key="curate_brush")
        st.caption(
            "The canvas starts with the current mask, filled and outlined as above: paint adds to it, "
            "erase removes from it; then apply the stroke."
        )
        brush = f"rgba({', '.join(map(str, colour))}, 0.8)" if mode == "paint" else "rgba(0, 0, 0, 0.6)"
        stroke = canvas_adapter.draw_stroke(
            shown_mask, key=f"curate_canvas_{current}_{version}", colour=brush
        )
        if stroke is not None:
            edited = curation.apply_stroke(binary, stroke, mode)
            st.image(enlarge(overlay(image, edited, colour), max(1, scale // 2)), caption="after the stroke")
            if st.button("Apply the stroke", key="curate_apply"):
                _act(project, curation.paint, current, version, edited)

    with st.expander("Add a missed instance"):
        st.caption("Click the missed object; the proposals containing that point are offered, best first.")
        clicked = canvas_adapter.click_point(image, key=f"curate_click_{record.id}")
        if clicked is not None:
            found = curation.candidates_at(project, run.id, record.id, clicked)[:6]
            if not found:
                st.info("No proposal contains that point.")
            else:
                classes = project.classes()
                name = st.selectbox(
                    "Class", classes, index=classes.index(mask["class_name"]), key="curate_class"
                )
                cols = st.columns(len(found))
                for k, (col, cand) in enumerate(zip(cols, found, strict=True)):
                    col.image(enlarge(overlay(image, decode_rle(cand.rle)), max(1, scale // 2)))
                    col.caption(
                        f"proposal {cand.proposal} · objectness {cand.objectness:.2f} · {cand.area} px"
                    )
                    if col.button("Add", key=f"curate_add_{k}"):
                        _act(project, curation.add_instance, run.id, record.id, name, cand.rle)

with st.expander("Audit log"):
    log = curation.audit_log(project, limit=200)
    if not log:
        st.caption("No edit yet.")
    else:
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "edit": r.edit_id,
                        "when": curation.when(r.at),
                        "who": r.author,
                        "mask": r.mask_id,
                        "what": r.action + (f" (of edit {r.reverts})" if r.reverts else ""),
                        "change": r.summary,
                        "undone": r.undone,
                    }
                    for r in log
                ]
            ),
            hide_index=True,
            width="stretch",
        )

st.subheader("Export the curated set")
include = st.checkbox("Also export masks still proposed", key="curate_include_proposed")
if st.button("Prepare the export", key="curate_export"):
    folder = project.artifacts("curated", run.id)
    try:
        doc = export_curated_coco(project, run.id, folder / "curated_coco.json", include)
        pngs = export_curated_voc(project, run.id, folder / "voc", include)
    except WssegError as error:
        show_error(error)
    else:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for part in sorted(p for p in (folder / "voc").rglob("*") if p.is_file()):
                archive.write(part, part.relative_to(folder / "voc"))
        st.session_state["curate_download"] = (
            str(folder),
            len(doc["annotations"]),
            len(pngs),
            buffer.getvalue(),
        )
if download := st.session_state.get("curate_download"):
    folder, n_masks, n_images, voc_zip = download
    st.caption(
        f"{n_masks} mask(s) on {n_images} image(s) written to `{folder}`: a COCO file in the project's ids, "
        "and a complete VOC folder (images, annotations, masks, splits, labelmap.txt) that imports back "
        "into wsseg"
    )
    d1, d2 = st.columns(2)
    d1.download_button(
        "COCO JSON",
        (Path(folder) / "curated_coco.json").read_bytes(),
        "curated_coco.json",
        "application/json",
    )
    d2.download_button("VOC folder (zip)", voc_zip, "curated_voc.zip", "application/zip")
