"""End-to-end in Chromium: start a short training job from the Train page, watch its progress bar
move, stop it, resume it, and see it move again; the database agrees at every step. Saves
``screenshot-train.png`` (to $WSSEG_SCREENSHOTS when set, as ``test_browser.py`` does)."""

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app.helpers import CHROMIUM, serve
from tests.app.test_browser import TIMEOUT, _no_exception, _screenshot, _wait_idle, browser  # noqa: F401
from wsseg.jobs.table import get_job, list_jobs
from wsseg.store.project import Project

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)"),
]
BAR = "[data-testid='stProgress'] [role='progressbar']"


@pytest.fixture(scope="module")
def served(trained: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    copy = tmp_path_factory.mktemp("browser-train") / "project"
    shutil.copytree(trained, copy)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("OMP_NUM_THREADS", "1")  # inherited by the server, so by its jobs (2 shared cores)
        with serve(copy) as url:
            yield url, copy


def _bar(page: object) -> float:
    return float(page.locator(BAR).first.get_attribute("aria-valuenow") or 0)


def _bar_above(page: object, value: float) -> float:
    """Wait (the page polls the job every 1.5 s) until the progress bar passes ``value``."""
    page.wait_for_function(
        f'() => {{ const b = document.querySelector("{BAR}");'
        f" return b && Number(b.getAttribute('aria-valuenow')) > {value}; }}",
        timeout=TIMEOUT,
    )
    return _bar(page)


def _job_past(root: Path, job_id: int, progress: float, epochs: int) -> object:
    """The job once its progress has passed ``progress`` and it has finished more than ``epochs`` epochs
    (fails after TIMEOUT)."""
    deadline = time.monotonic() + TIMEOUT / 1000
    while time.monotonic() < deadline:
        job = get_job(Project(root), job_id)
        moved = job.progress > progress and len(job.metrics.get("epochs") or []) > epochs
        if moved and job.status in ("running", "done"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not move past {progress:.2f}: {get_job(Project(root), job_id)}")


def _set(page: object, label: str, value: str) -> None:
    field = page.get_by_label(label, exact=True)
    field.fill(value)
    field.press("Enter")
    _wait_idle(page)


def test_start_watch_stop_and_resume_a_job(
    served: tuple[str, Path],
    browser: object,  # noqa: F811
    tmp_path: Path,
) -> None:
    url, root = served
    page = browser.new_page()
    # The app's first run registers its pages (st.navigation); a fresh server asked for /train first
    # serves Streamlit's own list of the pages/ folder instead.
    page.goto(url)
    page.get_by_role("heading", name="Project").wait_for(timeout=TIMEOUT)
    page.goto(url + "/train")
    page.get_by_role("heading", name="Train").first.wait_for(timeout=TIMEOUT)
    page.get_by_text("No job yet").wait_for(timeout=TIMEOUT)
    _set(page, "Run name (checkpoints/<name>/)", "browser")
    _set(page, "Epochs", "30")
    _set(page, "Batch size", "4")
    page.get_by_role("button", name="Start training").click()

    first = _bar_above(page, 0)
    moved = _bar_above(page, first)  # the bar moves while the job trains
    job = list_jobs(Project(root))[0]
    assert job.status == "running" and job.name == "browser" and job.progress >= moved / 100 - 0.05
    for _ in range(300):  # a finished epoch (a checkpoint) before stopping, so that resume has one
        if get_job(Project(root), job.id).metrics.get("epochs"):
            break
        page.wait_for_timeout(100)
    page.get_by_role("button", name="Stop").click()
    page.get_by_text("stopped ·").first.wait_for(timeout=TIMEOUT)
    stopped = get_job(Project(root), job.id)
    assert stopped.status == "stopped" and 0 < stopped.progress < 1
    _no_exception(page)

    page.get_by_role("button", name="Resume").click()
    # An idle machine may finish the resumed job before the page polls it again, so assert only what
    # holds either way: the job moved on from the stopped value and its checkpoint grew.
    page.get_by_text(re.compile(r"(running|done) · ")).first.wait_for(timeout=TIMEOUT)
    _job_past(root, job.id, stopped.progress, len(stopped.metrics["epochs"]))
    page.locator("[data-testid='stPlotlyChart']").first.wait_for(timeout=TIMEOUT)
    _no_exception(page)
    _screenshot(page, "train", tmp_path)
    stop = page.get_by_role("button", name="Stop")
    if get_job(Project(root), job.id).status == "running" and stop.count():
        stop.click()  # do not leave it training
    page.get_by_text(re.compile(r"(stopped|done) · ")).first.wait_for(timeout=TIMEOUT)
    assert get_job(Project(root), job.id).status in ("stopped", "done")
    page.close()
