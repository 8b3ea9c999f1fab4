"""The demo as a new user meets it: ``wsseg demo`` builds the project, then in Chromium the Curate page
has a mask to review and the Proposals page shows proposals, with nothing run by hand in between.

Real Streamlit server, Debian's Chromium; the demo is the command's own (6 images to keep it short)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.app.helpers import CHROMIUM, CHROMIUM_ARGS, WAIT, no_exception, serve, wait_idle
from wsseg.cli import main
from wsseg.store.project import Project

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)"),
]


def test_the_demo_has_a_mask_to_review_and_proposals_on_first_open(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    root = tmp_path / "demo"
    assert main(["demo", "--project", str(root), "--images", "6"]) == 0
    project = Project(root)
    masks = project.pseudo_masks(run_id=project.latest_run("pseudo_masks").id)
    first = {m["id"] for m in masks if m["status"] == "proposed"}
    assert first  # what the page must offer, from the database

    with serve(root) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)  # the app's root first: a fresh server's first request decides its page list
        page.get_by_role("heading", name="Project").wait_for(timeout=WAIT)

        page.goto(url + "/curate")
        page.get_by_text("automatic masks, most likely wrong first").wait_for(timeout=WAIT)
        wait_idle(page)
        caption = page.get_by_text(re.compile(r"^mask \d+ · ")).first.inner_text()
        shown = int(caption.split()[1])
        assert shown in first, (caption, sorted(first))  # a proposed mask of the demo's run, on screen
        assert page.get_by_text(f"{len(masks)} automatic masks, most likely wrong first").count() == 1
        assert page.get_by_role("button", name="Accept").count() == 1  # something to decide
        no_exception(page)

        page.goto(url + "/proposals")
        page.get_by_text("Ranked proposals (PRM score)").wait_for(timeout=WAIT)
        wait_idle(page)
        page.wait_for_function(  # the photo with its peaks, the PRM and the proposals' masks
            "() => document.querySelectorAll(\"[data-testid='stImage'] img\").length >= 3", timeout=WAIT
        )
        no_exception(page)
        browser.close()
