"""The whole pipeline from the browser, no shell: a new empty project, a zip of tagged photo-like
pictures uploaded on the Data page, tiny settings typed into the Project page's pipeline panel, "Run
every remaining step", and the panel showing every step done, which the database confirms (a done
run of each stage, pseudo masks, a Mask R-CNN checkpoint, stored evaluation metrics).

Real Streamlit server, Debian's Chromium, real background jobs. Screenshots (panel idle, running, all
done; the Train page's jobs) go to $WSSEG_SCREENSHOTS when set, else to the test's temporary folder.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.app.helpers import CHROMIUM, CHROMIUM_ARGS, serve
from tests.app.helpers import no_exception as _no_exception
from tests.app.helpers import wait_idle as _idle
from tests.app.photos import tagged_zip
from wsseg.jobs.table import list_jobs
from wsseg.store.project import Project
from wsseg.training.engine import CHECKPOINT
from wsseg.views.pipeline import STEPS

TIMEOUT = 120_000
PIPELINE_DEADLINE = 420.0  # seconds; it took about 2.5 minutes on a loaded 2-core machine
IMAGES = 8
#: Small settings typed into the panel: (field label, value).
SETTINGS = [
    ("Classifier epochs", 60),
    ("Classifier image size (px)", 64),
    ("Proposals kept per image", 30),
    ("Mask R-CNN epochs", 1),
    ("Mask R-CNN image size (px)", 64),
    ("Estimator epochs", 1),
    ("Estimator image size (px)", 64),
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)"),
]


def _screenshot(page: object, name: str, tmp_path: Path) -> None:
    folder = Path(os.environ.get("WSSEG_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"screenshot-{name}.png"), full_page=True)


def test_the_whole_pipeline_runs_from_the_panel_on_uploaded_photos(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the jobs' torch threads, on a shared machine
    root = tmp_path / "project"
    Project.create(root)
    upload = tmp_path / "photos.zip"
    upload.write_bytes(tagged_zip(IMAGES, seed=3))
    with serve(root) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})

        page.goto(url)
        page.get_by_text("This project has no images yet").wait_for(timeout=TIMEOUT)
        page.goto(url + "/data")
        page.get_by_role("tab", name="Upload").click()
        page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(str(upload))
        page.get_by_text("photos.zip").first.wait_for(timeout=TIMEOUT)
        page.get_by_role("button", name="Import").click()
        page.get_by_text(f"Imported {IMAGES} image(s).").wait_for(state="attached", timeout=TIMEOUT)

        page.goto(url)
        page.get_by_role("button", name=f"Run every remaining step ({len(STEPS)})").wait_for(
            timeout=2 * TIMEOUT
        )
        page.get_by_text("Settings of each step").click()
        for label, value in SETTINGS:
            field = page.get_by_label(label, exact=True)
            field.fill(str(value))
            field.press("Enter")
            _idle(page)
        for label, value in SETTINGS:
            assert page.get_by_label(label, exact=True).input_value() == str(value)
        _no_exception(page)
        _screenshot(page, "pipeline-idle", tmp_path)

        page.get_by_role("button", name=f"Run every remaining step ({len(STEPS)})").click()
        try:  # the picture only: whether it is caught running depends on the machine's speed
            page.get_by_text(re.compile(r"Pipeline job \d+: step [3-7]/7")).wait_for(timeout=180_000)
            _screenshot(page, "pipeline-running", tmp_path)
        except Exception:  # noqa: BLE001 (a missed picture is no failure)
            pass
        page.get_by_role("button", name="Every step is done").wait_for(timeout=PIPELINE_DEADLINE * 1000)
        _idle(page)
        _no_exception(page)
        states = page.locator("[data-testid='stMarkdownContainer']")
        assert states.get_by_text("done", exact=True).count() == len(STEPS)
        assert states.get_by_text("failed", exact=True).count() == 0
        _screenshot(page, "pipeline-done", tmp_path)

        # The database agrees with the panel.
        project = Project(root)
        assert project.count_images() == IMAGES
        for stage in (
            "classifier",
            "peaks",
            "proposals",
            "pseudo_masks",
            "maskrcnn",
            "ple",
            "ple_predict",
            "evaluate",
        ):
            run = project.latest_run(stage)
            assert run is not None and run.status == "done", (stage, project.runs(stage))
        classifier = project.latest_run("classifier")
        assert classifier.config["train"]["epochs"] == 60 and classifier.metrics["epochs_done"] == 60
        pseudo = project.latest_run("pseudo_masks")
        masks = len(project.pseudo_masks(run_id=pseudo.id))
        assert masks > 0
        page.get_by_text(f"run {pseudo.id} · {masks} pseudo masks on {IMAGES} images").wait_for(
            timeout=TIMEOUT
        )
        maskrcnn = project.latest_run("maskrcnn")
        assert (
            maskrcnn.config["pseudo_masks_run"] == pseudo.id
            and maskrcnn.config["init"] == classifier.config["name"]
        )
        assert (root / "checkpoints" / maskrcnn.config["name"] / CHECKPOINT).is_file()
        evaluation = project.latest_run("evaluate")
        assert evaluation.config["model_run"] == maskrcnn.id
        assert evaluation.metrics["against"] == "tags" and evaluation.metrics["images"] == IMAGES
        assert evaluation.metrics["tag_recall"] is not None
        jobs = list_jobs(project)
        assert [j.kind for j in jobs if j.kind != "pipeline"] == [s.kind for s in reversed(STEPS)]
        assert all(j.status == "done" for j in jobs)

        page.goto(url + "/train")
        page.get_by_text(f"Log of job {jobs[0].id}").wait_for(timeout=TIMEOUT)  # the newest job, shown
        _idle(page)
        _no_exception(page)
        _screenshot(page, "train", tmp_path)
        browser.close()
