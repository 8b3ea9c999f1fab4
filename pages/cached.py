"""Streamlit caches of what several pages compute: the classifier, one image's maps, a peak's PRM and
one image's retrieval candidates. Keyed on the project folder and on stamps of the runs and files they
come from, so a new run or checkpoint invalidates them."""

from __future__ import annotations

import numpy as np
import streamlit as st

from wsseg.models.peaks import Peak
from wsseg.store.project import Project
from wsseg.views.cam import Classifier, ImageMaps, PeakSettings, image_maps, open_classifier, peak_prm
from wsseg.views.retrieval import ImageCandidates, load_candidates


@st.cache_resource(max_entries=4, show_spinner="Loading the classifier…")
def classifier(root: str, mtime: float) -> Classifier | None:
    """The project's classifier, reloaded when its checkpoint file changes (``mtime``)."""
    return open_classifier(Project(root))


@st.cache_resource(max_entries=64, show_spinner=False)
def maps(root: str, image_id: int, stamp: tuple) -> ImageMaps | None:
    """One image's maps; ``stamp`` (checkpoint mtime, newest peaks run) invalidates them."""
    project = Project(root)
    return image_maps(project, project.image(image_id), classifier(root, stamp[0]))


@st.cache_resource(max_entries=256, show_spinner="Computing the peak response map…")
def prm(
    root: str, image_id: int, stamp: tuple, settings: PeakSettings, peak: Peak, method: str
) -> tuple[np.ndarray | None, str]:
    return peak_prm(maps(root, image_id, stamp), peak, settings, classifier(root, stamp[0]), method)


@st.cache_resource(max_entries=32, show_spinner="Reading the peaks and proposals…")
def candidates(root: str, image_id: int, stamp: tuple[int, int]) -> ImageCandidates | None:
    """One image's peaks and proposals from the runs ``stamp`` = (peaks run, proposals run)."""
    project = Project(root)
    return load_candidates(project, project.image(image_id), *stamp)
