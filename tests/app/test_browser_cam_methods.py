"""The CAMs page's method comparison and score card in Debian's Chromium (Playwright) on the served app:
switch views, see every default method's map of a project image, upload a photo that is not in the
project and see its maps (with the project's classifier, then with an ImageNet classifier whose
weights file lies in the project's weights/ folder), and score the methods against the truth.

Screenshots go to $WSSEG_SCREENSHOTS when set (else the test's temporary folder).
"""

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torchvision

from tests.app.helpers import CHROMIUM, CHROMIUM_ARGS, WAIT, no_exception, serve, wait_idle
from wsseg.methods.cams import LABELS
from wsseg.store.project import Project

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)"),
]

DEFAULT_METHODS = [m for m in LABELS if m != "scorecam"]


@pytest.fixture(scope="module")
def project(lesson: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the lesson project (the shipped classifier, true masks) with a random MobileNetV2
    ImageNet classifier's weights file in its weights/ folder."""
    root = tmp_path_factory.mktemp("cam-methods") / "project"
    shutil.copytree(lesson, root)
    (root / "weights").mkdir()
    torch.manual_seed(0)
    torch.save(torchvision.models.mobilenet_v2(weights=None).state_dict(), root / "weights" / "mnv2.pth")
    return root


@pytest.fixture(scope="module")
def page(project: Path) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with serve(project) as url, sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        tab = chromium.new_page(viewport={"width": 1400, "height": 1600})
        tab.goto(url + "/cams")
        tab.get_by_role("heading", name="CAMs and peaks").wait_for(timeout=WAIT)
        wait_idle(tab)
        yield tab
        chromium.close()


def _shot(page: object, name: str, tmp_path: Path) -> None:
    folder = Path(os.environ.get("WSSEG_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"screenshot-{name}.png"), full_page=True)


def _maps_shown(page: object) -> list[str]:
    """The captions of the method maps on the page, in order ("Grad-CAM · 0.12 s · 2 peak(s)")."""
    captions = page.locator("[data-testid='stImage']").filter(has_text=" s · ").all_inner_texts()
    return [c.strip() for c in captions]


def _choose(page: object, label: str, option: str) -> None:
    page.get_by_label(label).first.click()
    page.get_by_role("option", name=option).click()
    wait_idle(page)


def test_compare_methods_on_a_project_image_and_an_uploaded_photo(
    page: object, project: Path, tmp_path: Path
) -> None:
    page.get_by_text("Compare CAM methods").click()
    wait_idle(page)
    page.get_by_text(f"{LABELS[DEFAULT_METHODS[-1]]} · ").wait_for(timeout=WAIT)
    shown = _maps_shown(page)
    assert [c.split(" · ")[0] for c in shown] == [LABELS[m] for m in DEFAULT_METHODS], shown
    assert page.get_by_text("One colour scale for every map").count() == 1
    no_exception(page)
    _shot(page, "cams-compare", tmp_path)

    # The one-classifier view is still there, and back again.
    page.get_by_text("One classifier's CAMs and PRMs").click()
    page.get_by_text("Viewer rendered in").wait_for(timeout=WAIT)
    wait_idle(page)
    page.get_by_text("Compare CAM methods").click()
    wait_idle(page)

    # A photo that is not in the project: its maps at once, from the project's classifier.
    photo = tmp_path / "street.jpg"
    picture = np.full((180, 240, 3), (90, 140, 70), np.uint8)
    cv2.circle(picture, (80, 90), 35, (30, 30, 220), -1)
    cv2.imwrite(str(photo), picture)
    count = Project(project).count_images()
    page.get_by_text("Upload a photo").click()
    wait_idle(page)
    page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(str(photo))
    page.get_by_text("street.jpg (uploaded, not in the project)").wait_for(timeout=WAIT)
    wait_idle(page)
    assert len(_maps_shown(page)) == len(DEFAULT_METHODS)
    assert Project(project).count_images() == count  # looked at, never imported
    no_exception(page)

    # The same photo with the ImageNet classifier of the weights file: ImageNet's classes, no CRM.
    _choose(page, "Classifier", "ImageNet mobilenet_v2 · mnv2.pth")
    page.get_by_text("torchvision mobilenet_v2 (mnv2.pth) · 1000 classes").wait_for(timeout=WAIT)
    wait_idle(page)
    page.get_by_text(f"{LABELS[DEFAULT_METHODS[-1]]} · ").wait_for(timeout=WAIT)
    shown = [c.split(" · ")[0] for c in _maps_shown(page)]
    assert shown == [LABELS[m] for m in DEFAULT_METHODS if m != "crm"], shown
    no_exception(page)
    _shot(page, "cams-compare-imagenet", tmp_path)


def test_the_score_card_scores_every_chosen_method(page: object, tmp_path: Path) -> None:
    page.get_by_text("Score card against the truth").click()
    wait_idle(page)
    page.get_by_role("button", name="Score the methods").click()
    page.get_by_text("points best:").wait_for(timeout=4 * WAIT)
    wait_idle(page, timeout=4 * WAIT)
    table = page.locator("[data-testid='stDataFrame']")
    assert table.count() == 1
    assert page.locator("[data-testid='stPlotlyChart']").count() == 1
    no_exception(page)
    _shot(page, "cams-score-card", tmp_path)
