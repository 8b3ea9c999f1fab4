"""Data page: upload images with their tags, browse and filter them by tag, and tag them here.

Uploads go through the command line's importer (``wsseg.views.uploads``): every bad file is reported by
name and skipped, everything else is imported. Browsing is paged in SQL, so large projects stay fast.
"""

from __future__ import annotations

import streamlit as st

from pages.common import current_project, tag_filter, thumbnail
from wsseg.data.images import MIN_SIDE
from wsseg.errors import WssegError
from wsseg.stages.recipes import WORKING_SIDE
from wsseg.store.project import Project
from wsseg.views.uploads import import_uploads

COLUMNS = 6


def upload_form(project: Project) -> None:
    st.markdown(
        "Upload **images with a tags CSV** (header `filename,tags`, tags separated by `;`, an empty cell "
        "for an image with no class), images alone (they come in untagged: tag them on the left), or a "
        "**zip** of a dataset: a folder holding `images/` and `tags.csv`, a COCO export (its instance "
        "JSON with the images), a PASCAL VOC folder, or a folder per class. A dataset's masks are kept "
        "for evaluation only."
    )
    st.caption(
        f"Images smaller than {MIN_SIDE}x{MIN_SIDE} px are refused. Images larger than {WORKING_SIDE} px "
        f"are processed at {WORKING_SIDE} px on their long side; the originals are kept."
    )
    with st.form("upload", clear_on_submit=True):
        files = st.file_uploader("Files", accept_multiple_files=True, key="upload_files")
        split = st.text_input(
            "Split",
            value="",
            placeholder="the dataset's own splits; train for the rest",
            key="upload_split",
            help="Leave empty to keep a zipped dataset's train/val splits; a name puts every image there.",
        )
        submitted = st.form_submit_button("Import")
    if submitted:
        if not files:
            st.warning("Choose some files first.")
        else:
            with st.spinner(f"Importing {len(files)} file(s)…"):
                try:
                    report = import_uploads(
                        project, [(f.name, f.getvalue()) for f in files], split=split.strip() or None
                    )
                except WssegError as error:
                    st.error(str(error))
                    return
            # Rerun, so the counts above and the browsing grid show the new images at once; the
            # report is kept for this project and shown again after the rerun.
            st.session_state["upload_report"] = (str(project.root), report)
            st.rerun()
    kept = st.session_state.get("upload_report")
    if kept is None or kept[0] != str(project.root):
        return
    report = kept[1]
    st.success(f"Imported {len(report.imported)} image(s).")
    for note in report.notes:
        st.info(note)
    if report.skipped_duplicates:
        st.info(
            f"Skipped {len(report.skipped_duplicates)} image(s) already in the project (same content): "
            + ", ".join(report.skipped_duplicates[:20])
        )
    if report.problems:
        shown = "\n".join(f"- `{p.source}`: {p.message}" for p in report.problems[:30])
        more = (
            f"\n- … and {len(report.problems) - 30} more (table below)" if len(report.problems) > 30 else ""
        )
        st.warning(f"{len(report.problems)} file(s) or row(s) skipped:\n{shown}{more}")
        st.dataframe(
            [{"file": p.source, "problem": p.message} for p in report.problems],
            hide_index=True,
            width="stretch",
            key="upload_problems",
        )


def tag_editor(project: Project, records: list, key: str) -> None:
    """A table of the shown images with one checkbox column per class; saved in one click."""
    classes = project.classes()
    rows = [{"image": r.filename, **{c: c in r.tags for c in classes}} for r in records]
    edited = st.data_editor(
        rows,
        disabled=["image"],
        hide_index=True,
        width="stretch",
        key=key,
        column_config={c: st.column_config.CheckboxColumn(c) for c in classes},
    )
    left, mid, right = st.columns([1, 2, 1])
    if left.button("Save tags", key=f"{key}_save", type="primary"):
        changed = 0
        for record, row in zip(records, edited, strict=True):
            tags = {c for c in classes if row[c]}
            if tags != set(record.tags):
                project.set_tags(record.id, tags)
                changed += 1
        st.session_state["tags_saved"] = f"Saved the tags of {changed} image(s)."
        st.rerun()
    new_class = mid.text_input("New class", key="new_class", placeholder="name of a new class")
    if right.button("Add class", key="add_class") and new_class.strip():
        project.add_classes([new_class.strip()])
        st.rerun()
    if "tags_saved" in st.session_state:
        st.success(st.session_state.pop("tags_saved"))


def browse(project: Project) -> None:
    left, mid, right = st.columns([2, 1, 1])
    tag, untagged, total = tag_filter(project, key="data_tag", column=left)
    per_page = mid.selectbox("Per page", [24, 48, 96], key="data_per_page")
    pages = max(1, -(-total // per_page))
    page = right.number_input("Page", min_value=1, max_value=pages, value=1, key="data_page")
    shown = project.images(tag=tag, untagged=untagged, offset=(page - 1) * per_page, limit=per_page)
    st.caption(f"{total} image(s) · page {page} of {pages}")
    if not shown:
        st.info(
            "No images match this filter."
            if project.count_images()
            else "This project has no images yet: upload some (Upload tab), with their tags CSV or as a "
            "zip of a dataset (a tagged folder, COCO, VOC or a folder per class)."
        )
        return
    grid = st.columns(COLUMNS)
    for i, record in enumerate(shown):
        path = project.image_path(record)
        with grid[i % COLUMNS]:
            if path.exists():
                st.image(thumbnail(str(path), path.stat().st_mtime), width="stretch")
            else:
                st.warning(f"{record.filename}: file missing")
            st.caption(
                f"**{record.filename}**  \n" + (" · ".join(record.tags) if record.tags else "_no tags_")
            )
    with st.expander("Tag the images of this page", expanded=untagged):
        tag_editor(project, shown, key=f"tags_{tag}_{untagged}_{page}_{per_page}")


st.title("Data")
project = current_project()
if project is None:
    st.stop()
counts = project.tag_counts()
st.caption(
    f"{project.count_images()} images · {project.count_images(untagged=True)} untagged · "
    + (" · ".join(f"{name}: {n}" for name, n in counts.items()) or "no classes yet")
)
if (kept := st.session_state.get("upload_report")) and kept[0] == str(project.root):
    st.success(
        f"Last upload: {len(kept[1].imported)} image(s) imported, now {project.count_images()} in the "
        "project (the Upload tab has the report)."
    )
browse_tab, upload_tab = st.tabs(["Browse and tag", "Upload"])
with browse_tab:
    browse(project)
with upload_tab:
    upload_form(project)
