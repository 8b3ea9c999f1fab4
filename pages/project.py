"""Project page: open or create a project, see its pipeline status and browse its tagged images."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import streamlit as st

from pages.common import current_project, thumbnail
from wsseg.errors import WssegError
from wsseg.store import Project


def _flat(config: dict, prefix: str = "") -> list[tuple[str, object]]:
    """Nested config dicts as dotted (key, value) pairs, for one table cell."""
    items: list[tuple[str, object]] = []
    for key, value in config.items():
        if isinstance(value, dict):
            items.extend(_flat(value, f"{prefix}{key}."))
        else:
            items.append((f"{prefix}{key}", value))
    return items


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

st.subheader("Pipeline status")
runs = project.runs()
if not runs:
    st.info(f"No stage has run yet. Train the classifier: `wsseg train-classifier --project {project.root}`")
else:
    st.dataframe(
        [
            {
                "stage": r.stage,
                "status": r.status,
                "started": dt.datetime.fromtimestamp(r.started_at).strftime("%Y-%m-%d %H:%M"),
                "metrics": ", ".join(
                    f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.metrics.items()
                ),
                "config": ", ".join(f"{k}={v}" for k, v in _flat(r.config)),
            }
            for r in runs
        ],
        hide_index=True,
        width="stretch",
    )

st.subheader("Images")
left, mid, right = st.columns([2, 1, 1])
tag = left.selectbox("Filter by tag", ["(all)", "(untagged)", *counts], key="tag_filter")
per_page = mid.selectbox("Per page", [24, 48, 96], key="per_page")
tag_arg = None if tag in ("(all)", "(untagged)") else tag
untagged = tag == "(untagged)"
total = project.count_images(tag=tag_arg, untagged=untagged)
pages = max(1, -(-total // per_page))
page = right.number_input("Page", min_value=1, max_value=pages, value=1, key="page_number")
shown = project.images(tag=tag_arg, untagged=untagged, offset=(page - 1) * per_page, limit=per_page)
st.caption(f"{total} image(s) · page {page} of {pages}")

grid = st.columns(6)
for i, record in enumerate(shown):
    path = project.image_path(record)
    with grid[i % 6]:
        if path.exists():
            st.image(thumbnail(str(path), path.stat().st_mtime), width="stretch")
        else:
            st.warning(f"{record.filename}: file missing")
        st.caption(f"**{record.filename}**  \n" + (" · ".join(record.tags) if record.tags else "_no tags_"))

if not shown:
    st.info(
        "No images match this filter."
        if n_images
        else f"This project has no images yet. Import some: "
        f"`wsseg import FOLDER --project {Path(project.root)}`"
    )
