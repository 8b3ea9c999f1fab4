"""Project page: open or create a project, run its pipeline from the pipeline panel (each step's
state, settings, and buttons that run the next or every remaining step as background jobs), see
every run (with which config, when) and the lineage of any pseudo mask, each step a picture. Images
are browsed on the Data page."""

from __future__ import annotations

import datetime as dt
import io
import zipfile

import streamlit as st

from pages.common import current_project, metrics_text, show_error, skipped_note
from pages.pipeline_panel import pipeline_panel
from wsseg.curation.export import FORMATS, RUN_STAGES, WHATS, export
from wsseg.errors import WssegError
from wsseg.store.project import Project
from wsseg.views.lineage import images_with_masks, mask_lineage
from wsseg.views.overlay import (
    OverlayStyle,
    blend,
    display_scale,
    draw_peaks,
    enlarge,
    greyed,
    jpeg_bytes,
    normalize,
    outlines,
    prm_heat,
    with_colour_bar,
)

#: The ranked proposals shown in a lineage, best first, and their outline colours.
RANKED_SHOWN = 4
RANKED_COLOURS = [(255, 40, 40), (255, 150, 0), (255, 235, 0), (120, 220, 255)]


def _flat(config: dict, prefix: str = "") -> list[tuple[str, object]]:
    """Nested config dicts as dotted (key, value) pairs, for one table cell."""
    items: list[tuple[str, object]] = []
    for key, value in config.items():
        if isinstance(value, dict):
            items.extend(_flat(value, f"{prefix}{key}."))
        else:
            items.append((f"{prefix}{key}", value))
    return items


def lineage_view(project: Project) -> None:
    """Tags -> CRM -> peak -> PRM -> ranked proposals -> chosen mask -> model prediction of one
    pseudo mask, as pictures."""
    image_ids = images_with_masks(project)
    if not image_ids:
        st.info(
            "No pseudo masks yet. They come from the Pseudo masks step of the pipeline above, after the "
            "classifier, its peaks and the proposals."
        )
        return
    left, right = st.columns(2)
    k = left.number_input(
        f"Image with pseudo masks (1 to {len(image_ids)})", 1, len(image_ids), 1, key="lin_image"
    )
    masks = project.pseudo_masks(image_ids[k - 1])
    pick = right.selectbox(
        "Pseudo mask",
        range(len(masks)),
        format_func=lambda i: f"#{masks[i]['id']} {masks[i]['class_name']} ({masks[i]['status']})",
        key="lin_mask",
    )
    lin = mask_lineage(project, masks[pick])
    scale = display_scale(lin.image.shape[:2], 240)
    style = OverlayStyle()
    point = [lin.peak] if lin.peak else []
    steps = [("Image and tags", enlarge(lin.image, scale), ", ".join(lin.tags) or "no tags")]
    if lin.crm is not None:
        crm = enlarge(blend(lin.image, normalize(lin.crm), style.opacity, style.colormap), scale)
        top = float(lin.crm.max())
        ticks = ("0", f"{top / 2:.2g}", f"{top:.2g}") if top > 0 else ("0", "0.5", "1")
        steps.append(
            (
                f"CRM of {lin.class_name}",
                with_colour_bar(crm, style.colormap, ticks),
                "class response map (linked peaks run), over its maximum",
            )
        )
        steps.append(("Peak", draw_peaks(crm, point, scale=scale), f"at (y, x) = {lin.peak}"))
    if lin.prm is not None:
        heat, prm_scale = prm_heat(lin.prm)
        prm = enlarge(blend(greyed(lin.image), heat, style.opacity, style.colormap), scale)
        prm = with_colour_bar(draw_peaks(prm, point, scale=scale), style.colormap, prm_scale.ticks)
        steps.append(("PRM", prm, f"peak response map of that peak · {prm_scale.text}"))
    if lin.ranked is not None and len(lin.ranked):
        shown = lin.ranked[:RANKED_SHOWN]
        ranked = outlines(lin.image, shown, RANKED_COLOURS[: len(shown)])
        steps.append(("Ranked proposals", enlarge(ranked, scale), "best first: red, orange, yellow, blue"))
    mask = enlarge(blend(lin.image, lin.mask.astype("float32"), 0.6, "viridis"), scale)
    score = lin.info["score"]
    shown_score = f"{score:.3g}" if isinstance(score, int | float) else "none"
    steps.append(("Chosen mask", mask, f"{lin.info['strategy'] or 'mask'} · score {shown_score}"))
    if lin.prediction is not None:
        predicted, score = lin.prediction
        picture = enlarge(blend(lin.image, predicted.astype("float32"), 0.6, "inferno"), scale)
        steps.append(("Model prediction", picture, f"newest evaluation · score {score:.2f}"))
    for col, (title, picture, caption) in zip(st.columns(len(steps)), steps, strict=True):
        col.markdown(f"**{title}**")
        col.image(jpeg_bytes(picture), caption=caption, width="stretch")
    if lin.crm is None:
        st.caption("This mask is linked to no stored peak, so its CRM, peak and PRM cannot be shown.")
    st.caption(
        " · ".join(f"{k}: {v}" for k, v in lin.info.items())
        + (" · recorded: " + ", ".join(f"{k}={v}" for k, v in _flat(lin.recorded)) if lin.recorded else "")
    )


EXPORT_WORDS = {
    "pseudo": "pseudo masks (all but rejected)",
    "curated": "curated masks (accepted or edited)",
    "predictions": "Mask R-CNN predictions (COCO results)",
    "labels": "estimator label maps (semantic)",
}


def export_section(project: Project) -> None:
    """``wsseg export`` behind buttons: what, which run, which format; then a download."""
    left, middle, right = st.columns(3)
    what = left.selectbox("What", WHATS, format_func=EXPORT_WORDS.get, key="export_what")
    runs = [r for r in project.runs(RUN_STAGES[what]) if r.status == "done"]
    if not runs:
        st.caption(f"No finished run to export {EXPORT_WORDS[what]} from yet.")
        return
    run = middle.selectbox("Run", [r.id for r in runs], format_func=lambda r: f"run {r}", key="export_run")
    fmt = right.selectbox("Format", FORMATS, format_func=str.upper, key="export_format")
    st.caption(
        "COCO keeps the source's image ids, file names and category ids; VOC is a complete folder (images, "
        "annotations, masks, splits, labelmap.txt) that imports back into wsseg."
    )
    if st.button("Prepare the export", key="export_prepare"):
        folder = project.root / "artifacts" / "exports"
        target = folder / (f"{what}-run-{run}.json" if fmt == "coco" else f"{what}-run-{run}-voc")
        try:
            report = export(project, what, fmt, target, run)
        except WssegError as error:
            show_error(error)
            return
        if fmt == "coco":
            data, name, mime = target.read_bytes(), target.name, "application/json"
        else:
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
                for part in sorted(p for p in target.rglob("*") if p.is_file()):
                    archive.write(part, part.relative_to(target))
            data, name, mime = buffer.getvalue(), f"{target.name}.zip", "application/zip"
        st.session_state["export_ready"] = (data, name, mime, report.instances, report.images, str(target))
    if ready := st.session_state.get("export_ready"):
        data, name, mime, instances, images, where = ready
        st.caption(f"{instances} mask(s) over {images} image(s), written to `{where}`")
        st.download_button(f"Download {name}", data, name, mime, key="export_download")


st.title("Project")

with st.expander("Open or create a project", expanded=False), st.form("open_project"):
    folder = st.text_input("Project folder", value=st.session_state.get("project_root", ""))
    create = st.checkbox("Create it if it does not exist")
    if st.form_submit_button("Open"):
        try:
            project = Project.create(folder) if create else Project(folder)
            st.session_state["project_root"] = str(project.root)
            st.session_state["page_index"] = 0
            st.rerun()
        except WssegError as error:
            st.error(str(error))

project = current_project()
if project is None:
    st.stop()

n_images = project.count_images()
counts = project.tag_counts()
st.caption(f"`{project.root.resolve()}` · {n_images} images · {len(counts)} classes")
cols = st.columns(max(len(counts), 1))
for col, (name, n) in zip(cols, counts.items(), strict=False):
    col.metric(name, f"{n} images")

st.subheader("Pipeline")
if not n_images:
    st.info(
        "This project has no images yet: upload tagged images on the Data page, then run the pipeline here."
    )
    st.page_link("pages/data.py", label="Upload images (Data page)", icon=":material/upload:")
else:
    pipeline_panel(project)

runs = project.runs()
if not runs:
    st.caption("No stage has run yet.")
else:
    st.markdown("**Every run, with its config**")
    st.dataframe(
        [
            {
                "stage": r.stage,
                "status": r.status,
                "started": dt.datetime.fromtimestamp(r.started_at).strftime("%Y-%m-%d %H:%M"),
                "took": f"{r.finished_at - r.started_at:.0f} s" if r.finished_at else "",
                "metrics": metrics_text(r.metrics),
                "config": ", ".join(f"{k}={v}" for k, v in _flat(r.config)),
            }
            for r in runs
        ],
        hide_index=True,
        width="stretch",
    )
    skipped_note(runs)

st.subheader("Where a pseudo mask comes from")
lineage_view(project)

st.subheader("Export")
export_section(project)
