"""Issue 17's page fixes seen in Debian's Chromium (Playwright) on the real served app: the project
stays in the URL through a reload and a move to another page, an import shows its new count at once,
and the CAMs page draws colour bars and numbers the PRM's peak as the clicked one.

Screenshots go to $WSSEG_SCREENSHOTS when set (else the test's temporary folder).
"""

import io
import os
import shutil
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from tests.app.helpers import CHROMIUM, CHROMIUM_ARGS, first_tagged, serve
from tests.app.helpers import no_exception as _no_exception
from tests.app.helpers import wait_idle as _idle
from wsseg.demo.project import create_demo_project
from wsseg.stages.recipes import INFERENCE_PEAKS
from wsseg.store.project import Project
from wsseg.views.cam import PeakSettings, class_peaks, image_maps, open_classifier, peak_prm
from wsseg.views.overlay import OverlayStyle, greyed, overlay_view, prm_heat

TIMEOUT = 90_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)"),
]


@pytest.fixture(scope="module")
def projects(lesson: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the server's default project: a copy of the lesson project, with the shipped classifier and
    its peaks; a second small project, opened through the URL)."""
    folder = tmp_path_factory.mktemp("browser-pages")
    shutil.copytree(lesson, folder / "default")
    create_demo_project(folder / "second", n_images=4, seed=11)
    return folder / "default", folder / "second"


@pytest.fixture(scope="module")
def server(projects: tuple[Path, Path]) -> Iterator[str]:
    with serve(projects[0]) as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _page(browser: object) -> object:
    return browser.new_page(viewport={"width": 1400, "height": 1800})


def _shot(page: object, name: str, tmp_path: Path) -> None:
    folder = Path(os.environ.get("WSSEG_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"screenshot-{name}.png"), full_page=True)


def _url_project(page: object) -> str | None:
    query = urllib.parse.parse_qs(urllib.parse.urlparse(page.url).query)
    return query.get("project", [None])[-1]


def _png(value: int) -> bytes:
    return cv2.imencode(".png", np.full((40, 40, 3), value, np.uint8))[1].tobytes()


def test_a_linked_project_survives_a_reload_and_an_import_shows_at_once(
    server: str, browser: object, projects: tuple[Path, Path], tmp_path: Path
) -> None:
    default, second = projects
    page = _page(browser)
    page.goto(server)  # a fresh server's first request decides its page list
    page.get_by_role("heading", name="Project").wait_for(timeout=TIMEOUT)
    assert _url_project(page) == str(default)  # the URL names the project shown
    page.goto(f"{server}/data?project={urllib.parse.quote(str(second))}")
    page.get_by_text("4 image(s) · page 1 of 1").wait_for(timeout=TIMEOUT)
    _idle(page)
    assert _url_project(page) == str(second)

    # An import: the counts and the grid show the new images without leaving the page.
    folder = tmp_path / "upload"
    (folder / "images").mkdir(parents=True)
    for k in range(3):
        (folder / "images" / f"fresh{k}.png").write_bytes(_png(60 + 50 * k))
    (folder / "tags.csv").write_text("filename,tags\n" + "".join(f"fresh{k}.png,disc\n" for k in range(3)))
    page.get_by_role("tab", name="Upload").click()
    page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(
        [str(p) for p in sorted((folder / "images").iterdir())] + [str(folder / "tags.csv")]
    )
    page.get_by_text("fresh0.png").first.wait_for(timeout=TIMEOUT)
    page.get_by_role("button", name="Import").click()
    page.get_by_text("Last upload: 3 image(s) imported, now 7 in the project").wait_for(timeout=TIMEOUT)
    page.get_by_text("7 image(s) · page 1 of 1").wait_for(timeout=TIMEOUT)  # the grid, already
    _idle(page)
    assert Project(second).count_images() == 7
    assert page.get_by_text("7 images ·").count() == 1  # the counts line above the tabs
    _no_exception(page)
    _shot(page, "data-after-import", tmp_path)
    page.get_by_role("tab", name="Upload").click()
    page.get_by_text("Imported 3 image(s).").wait_for(timeout=TIMEOUT)  # the report is kept

    # A reload is a new browser session: it stays on the linked project, and so does the next page.
    page.reload()
    page.get_by_text("7 image(s) · page 1 of 1").wait_for(timeout=TIMEOUT)
    _idle(page)
    assert _url_project(page) == str(second)
    page.get_by_test_id("stSidebarNav").get_by_text("CAMs and peaks", exact=True).click()
    page.get_by_role("heading", name="CAMs and peaks").wait_for(timeout=TIMEOUT)
    _idle(page)
    assert _url_project(page) == str(second)
    page.get_by_test_id("stSidebarNav").get_by_text("Data", exact=True).click()
    page.get_by_text("7 image(s) · page 1 of 1").wait_for(timeout=TIMEOUT)  # still the linked project

    # A link to a folder that is no project: said so, and the default project is shown instead.
    page.goto(f"{server}/data?project={urllib.parse.quote(str(tmp_path))}")
    page.get_by_text("is not a wsseg project").wait_for(timeout=TIMEOUT)
    page.get_by_text(f"{Project(default).count_images()} image(s) · page 1 of 1").wait_for(timeout=TIMEOUT)
    _idle(page)
    assert _url_project(page) == str(default)
    _no_exception(page)
    page.close()


def _decoded(page: object, src: str) -> np.ndarray:
    """The picture at ``src`` (a media URL of the page) as HxWx3 uint8 RGB."""
    body = page.request.get(urllib.parse.urljoin(page.url, src)).body()
    return np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))


def test_cams_page_has_colour_bars_and_the_prm_shows_the_clicked_peaks_number(
    server: str, browser: object, projects: tuple[Path, Path], tmp_path: Path
) -> None:
    store = Project(projects[0])
    classifier = open_classifier(store)
    found = []
    for number, record in enumerate(store.images(), start=1):
        maps = image_maps(store, record, classifier)
        if record.tags:
            peaks = class_peaks(maps, PeakSettings(), first_tagged(store.classes(), record.tags))
            if len(peaks) >= 2:
                found.append((number, record, maps, peaks))
    assert found, "the shipped classifier gives no lesson image two peaks of its first tagged class"
    number, record, maps, peaks = found[0]

    page = _page(browser)
    page.goto(server)
    page.get_by_role("heading", name="Project").wait_for(timeout=TIMEOUT)
    page.goto(server + "/cams")
    page.get_by_text("Viewer rendered in").wait_for(timeout=TIMEOUT)
    if number > 1:
        field = page.get_by_label("Image (1 to")
        field.fill(str(number))
        field.press("Enter")
        page.get_by_text(record.filename).wait_for(timeout=TIMEOUT)
    _idle(page)
    # A colour bar under the CAM, the PRM and the strip of every class, each saying what 0 and 1 mean.
    bars = page.locator("[data-testid='stImage']").filter(has_text="Colour scale")
    bars.nth(2).wait_for(timeout=TIMEOUT)
    assert bars.count() == 3
    assert bars.first.locator("img").evaluate("e => e.complete && e.naturalWidth") == 480

    # Click the last peak on the CAM: the PRM panel is that peak's, numbered as in the list.
    target = len(peaks) - 1
    cam = page.frame_locator("iframe[title*='streamlit_image_coordinates']").locator("img")
    cam.wait_for(timeout=TIMEOUT)
    box = cam.bounding_box()
    scale = box["width"] / maps.image.shape[1]
    cam.click(position={"x": (peaks[target].x + 0.5) * scale, "y": (peaks[target].y + 0.5) * scale})
    page.get_by_text(f"PRM of peak {target + 1}").wait_for(timeout=TIMEOUT)
    _idle(page)
    prm_image = page.locator("[data-testid='stImage']").filter(has_text="drawn over the image in grey")
    shown = _decoded(page, prm_image.locator("img").get_attribute("src"))

    peak = peaks[target]
    prm, _ = peak_prm(maps, peak, PeakSettings(), classifier, INFERENCE_PEAKS.method)
    backdrop, heat = greyed(maps.image), prm_heat(prm)[0]
    drawn = {
        label: overlay_view(backdrop, heat, OverlayStyle(), [(peak.y, peak.x)], 0, labels=[label])
        for label in (str(target + 1), "1")
    }
    assert shown.shape == drawn["1"].shape
    s = shown.shape[0] // maps.image.shape[0]
    window = np.s_[max(peak.y * s - 12, 0) : peak.y * s + 15, max(peak.x * s - 12, 0) : peak.x * s + 15]
    error = {k: np.abs(shown[window].astype(int) - v[window].astype(int)).mean() for k, v in drawn.items()}
    assert error[str(target + 1)] < error["1"] and error[str(target + 1)] < 12, error
    _no_exception(page)
    _shot(page, "cams-prm", tmp_path)
    page.close()
