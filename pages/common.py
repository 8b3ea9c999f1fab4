"""What every page shares: the current project, cached thumbnails, and user-facing errors.

Pages gather input, call the core and draw; nothing here computes anything the command line cannot.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st
from PIL import Image, ImageDraw

from wsseg.demo.project import build_demo, create_demo_project
from wsseg.errors import WssegError
from wsseg.stages.per_image import skipped_images
from wsseg.store.project import Project, RunRecord

DEFAULT_PROJECT = Path(os.environ.get("WSSEG_PROJECT", "projects/demo"))


def _leave_folder_navigation() -> None:
    """Run the page through ``app.py`` even when it is a fresh server's first request.

    Until ``app.py`` has called ``st.navigation`` once, Streamlit treats an app with a ``pages/``
    folder as its old multipage app: a first visit to a page's own URL (a bookmark, a shared link)
    runs that file alone and lists every module of the folder in the sidebar. Every page imports
    this module, so the first such run switches that mode off (Streamlit's own ``st.navigation``
    does the same) and reruns, now through ``app.py``, on the same URL.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


_leave_folder_navigation()


#: The page URL's query parameter naming the current project: ``?project=/path/to/project``.
PROJECT_PARAM = "project"


def link_problem(value: str) -> str | None:
    """Why the URL's ``?project=value`` cannot be opened, in words (None when it can): the default
    project may be missing (it is created), any other folder must be an existing wsseg project."""
    root = Path(value)
    if not value.strip():
        return "is empty"
    if root == DEFAULT_PROJECT:
        return None
    if not root.exists():
        return "does not exist on the server"
    if not Project.is_project(root):
        return "is not a wsseg project (it holds no project.sqlite)"
    try:
        Project(root)
    except WssegError as error:
        return f"cannot be opened: {error}"
    return None


def project_root() -> Path:
    """The folder of this browser session's project, kept in the page's URL (``?project=``).

    The Project page's choice (``st.session_state["project_root"]``) wins; a new session (a reload, a
    shared link) takes the URL's project, after checking it: an unknown or invalid one is named in a
    warning, and the default project ($WSSEG_PROJECT, else projects/demo) is shown instead. Either way
    the URL then names the project shown, so a reload stays on it.
    """
    state = st.session_state
    if "project_root" not in state:
        wanted = st.query_params.get(PROJECT_PARAM)
        problem = link_problem(wanted) if wanted is not None else None
        state["project_root"] = wanted if wanted is not None and problem is None else str(DEFAULT_PROJECT)
        if problem is not None:
            state["project_notice"] = (
                f"The project in this page's link, `{wanted}`, {problem}. Showing the default project "
                f"`{DEFAULT_PROJECT}` instead (open another one on the Project page)."
            )
    root = state["project_root"]
    if state.get("project_notice") and root == str(DEFAULT_PROJECT):
        st.warning(state["project_notice"], icon=":material/link_off:")
    else:
        state.pop("project_notice", None)
    if st.query_params.get(PROJECT_PARAM) != root:
        st.query_params[PROJECT_PARAM] = root
    return Path(root)


def keep_project_in_url() -> None:
    """On a page that shows no project of its own (Learn): keep this session's project in the URL,
    so a reload there, then a visit to another page, stays on it."""
    root = st.session_state.get("project_root")
    if root is not None and st.query_params.get(PROJECT_PARAM) != root:
        st.query_params[PROJECT_PARAM] = root


def current_project() -> Project | None:
    """The project of this browser session (``project_root``: the Project page's choice, else the
    URL's ``?project=``, else $WSSEG_PROJECT, else projects/demo).

    The demo project is created on first start. Returns None (after showing why) when the chosen
    folder cannot be opened.
    """
    root = project_root()
    try:
        if not Project.is_project(root) and root == DEFAULT_PROJECT:
            with st.spinner(
                "Creating the demo project on first start: synthetic shapes, the shipped classifier's "
                "peaks, proposals and pseudo masks (about a minute)…"
            ):
                project = create_demo_project(root)
                build_demo(project)
                return project
        return Project(root)
    except WssegError as error:
        st.error(str(error))
        return None


@st.cache_data(max_entries=4096, show_spinner=False)
def thumbnail(path: str, mtime: float, size: int = 160) -> np.ndarray:
    """A thumbnail (HxWx3 uint8, longest side ``size``); keyed on the file's mtime so edits show. A file
    that cannot be read (damaged on disk) gets a grey square saying so, never a traceback."""
    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            img.thumbnail((size, size))
            return np.asarray(img)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        img = Image.new("RGB", (size, size), (90, 90, 90))
        ImageDraw.Draw(img).text((size // 2, size // 2), "unreadable", fill=(255, 255, 255), anchor="mm")
        return np.asarray(img)


def show_error(error: WssegError) -> None:
    """Show a user-facing error as a message (never a traceback)."""
    st.error(str(error))


def tag_filter(project: Project, key: str, column: object = st) -> tuple[str | None, bool, int]:
    """A 'Filter by tag' select box (all, untagged, or one class); returns (tag or None, untagged,
    number of matching images)."""
    choice = column.selectbox("Filter by tag", ["(all)", "(untagged)", *project.classes()], key=key)
    tag = None if choice in ("(all)", "(untagged)") else choice
    untagged = choice == "(untagged)"
    return tag, untagged, project.count_images(tag=tag, untagged=untagged)


def skipped_note(runs: Iterable[RunRecord | None]) -> None:
    """For each run that skipped images, a small closed expander "N image(s) skipped" naming each
    image with its reason (nothing for a run that skipped none, or None)."""
    for run in runs:
        skipped = skipped_images(run.metrics) if run is not None else []
        if skipped:
            label = f"{run.stage.replace('_', ' ')} run {run.id}: {len(skipped)} image(s) skipped"
            with st.expander(label, icon=":material/warning:"):
                st.markdown("\n".join(f"- **{s.get('image', '?')}**: {s.get('reason', '')}" for s in skipped))


def metrics_text(metrics: dict) -> str:
    """A run's metrics in one line, ``name=value`` (floats to 3 figures; a list, such as the skipped
    images, by its length)."""
    return ", ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={len(v)}" if isinstance(v, list) else f"{k}={v}"
        for k, v in metrics.items()
    )


def peak_filter_sliders(
    threshold_column: Any, smooth_column: Any, default: Any, key: str
) -> tuple[float | None, float | None]:
    """The inference peaks' two filters as sliders in the given columns, starting at ``default``'s
    (a ``PeakSettings``); a slider at 0 is a filter that is off, returned as None."""
    threshold = threshold_column.slider(
        "Threshold (fraction of the map's max)",
        0.0,
        1.0,
        default.relative_threshold or 0.0,
        0.05,
        key=f"{key}_threshold",
    )
    smooth = smooth_column.slider(
        "Smoothing (cells)", 0.0, 3.0, default.smooth or 0.0, 0.5, key=f"{key}_smooth"
    )
    return threshold or None, smooth or None
