"""The pages that show a run say which images it skipped and why (a closed expander per run), and the
Data page says what sizes are refused and how large ones are processed."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.app.helpers import open_page
from wsseg.data.images import MIN_SIDE
from wsseg.demo.project import create_demo_project
from wsseg.methods.proposals import ProposalConfig
from wsseg.stages.make_proposals import make_proposals
from wsseg.stages.recipes import WORKING_SIDE


@pytest.fixture(scope="module")
def project_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("skipped") / "p"
    project = create_demo_project(root, n_images=2, seed=5)
    dot = cv2.imencode(".png", np.full((1, 1, 3), 200, np.uint8))[1].tobytes()
    project.add_image(
        "old-dot.png", dot, 1, 1, hashlib.sha256(dot).hexdigest(), ("disc",)
    )  # stored before a minimum
    make_proposals(project, ProposalConfig(scales=(400.0,), colour_spaces=("rgb",), max_proposals=5))
    return root


def _expander(at, label_start: str):
    found = [e for e in at.expander if e.label.startswith(label_start)]
    assert len(found) == 1, [e.label for e in at.expander]
    return found[0]


def test_the_project_page_names_a_runs_skipped_images_and_why(project_root: Path) -> None:
    at = open_page(project_root)
    assert not at.exception
    note = _expander(at, "proposals run 1: 1 image(s) skipped")
    text = "\n".join(m.value for m in note.markdown)
    assert text == "- **old-dot.png**: 1x1 pixels is too small: selective search needs at least 2x2"
    table = at.dataframe[0].value
    row = table[table["stage"] == "proposals"].iloc[0]
    assert "images=3" in row["metrics"] and "skipped=1" in row["metrics"]  # a count, not the list


def test_the_data_page_says_which_sizes_are_refused_and_how_large_ones_are_processed(
    project_root: Path,
) -> None:
    at = open_page(project_root, "pages/data.py")
    assert not at.exception
    assert any(
        c.value == f"Images smaller than {MIN_SIDE}x{MIN_SIDE} px are refused. Images larger than "
        f"{WORKING_SIDE} px are processed at {WORKING_SIDE} px on their long side; the originals are kept."
        for c in at.caption
    )
