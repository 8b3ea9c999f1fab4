"""What every page shares: the current project, cached thumbnails, and user-facing errors.

Pages gather input, call the core and draw; nothing here computes anything the command line cannot.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import streamlit as st
from PIL import Image

from wsseg.errors import WssegError
from wsseg.store.project import Project

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


def current_project() -> Project | None:
    """The project chosen in this browser session (default: $WSSEG_PROJECT, else projects/demo).

    The demo project is created on first start. Returns None (after showing why) when the chosen
    folder cannot be opened.
    """
    root = Path(st.session_state.setdefault("project_root", str(DEFAULT_PROJECT)))
    try:
        if not Project.is_project(root) and root == DEFAULT_PROJECT:
            with st.spinner("Creating the demo project (synthetic shapes) on first start…"):
                from wsseg.demo.project import create_demo_project

                return create_demo_project(root)
        return Project(root)
    except WssegError as error:
        st.error(str(error))
        return None


@st.cache_data(max_entries=4096, show_spinner=False)
def thumbnail(path: str, mtime: float, size: int = 160) -> np.ndarray:
    """A thumbnail (HxWx3 uint8, longest side ``size``); keyed on the file's mtime so edits show."""
    with Image.open(path) as img:
        img = img.convert("RGB")
        img.thumbnail((size, size))
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
