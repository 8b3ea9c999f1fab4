"""The whole pipeline from the browser, no shell: a new empty project, a zip of tagged photo-like
pictures uploaded on the Data page, tiny settings typed into the Project page's pipeline panel, "Run
every remaining step", and the panel showing every step done, which the database confirms (a done
run of each stage, pseudo masks, a Mask R-CNN checkpoint, stored evaluation metrics). Then, still in
the browser: reject, undo, accept and paint a mask on the Curate page, retrain Mask R-CNN on the curated masks
from the Train page, evaluate the retrained model from the panel and see its scores on the Evaluate
page; the database agrees after every click.

Real Streamlit server, Debian's Chromium, real background jobs. Screenshots (panel idle, running, all
done; the Train page's jobs) go to $WSSEG_SCREENSHOTS when set, else to the test's temporary folder.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.app.helpers import CHROMIUM, CHROMIUM_ARGS, serve
from tests.app.helpers import no_exception as _no_exception
from tests.app.helpers import wait_idle as _idle
from tests.app.photos import tagged_zip
from wsseg.curation.export import is_curated
from wsseg.data.coco import decode_rle
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

        curated = _curate(page, url, root, pseudo.id, tmp_path)
        retrained = _retrain(page, url, root, curated, tmp_path)
        _evaluate(page, url, root, retrained, tmp_path)
        browser.close()


def _changed(page: object, root: Path, before: dict[int, int]) -> list[dict]:
    """The pseudo masks whose version moved on from ``before`` (mask id -> version), polled until one
    does (the click's rerun writes the edit) or TIMEOUT passes."""
    changed: list[dict] = []
    for _ in range(TIMEOUT // 200):
        changed = [m for m in Project(root).pseudo_masks() if m["version"] != before[m["id"]]]
        if changed:
            break
        page.wait_for_timeout(200)
    _idle(page)
    return changed


def _caption_mask(page: object) -> int:
    """The id of the mask the Curate page shows (its picture's caption: "mask N · class · file")."""
    caption = page.get_by_text(re.compile(r"^mask \d+ · ")).first
    caption.wait_for(timeout=TIMEOUT)
    return int(caption.inner_text().split()[1])


def _decide(page: object, root: Path, button: str, mask_id: int) -> dict:
    """Click ``button`` on ``mask_id``; the mask's row once the database has the decision and the page
    shows that mask again at its new version (a decision may move on to the next mask: Previous steps
    back; a click made while the page reruns can be lost, so none is made before it has drawn)."""
    before = {m["id"]: m["version"] for m in Project(root).pseudo_masks()}
    page.get_by_role("button", name=button).first.click()
    changed = _changed(page, root, before)
    assert [m["id"] for m in changed] == [mask_id], (button, changed)
    shown = f"status {changed[0]['status']} · version {changed[0]['version']}"
    settled = (  # the page shows the new version of the mask, or another mask
        "() => { const t = document.body.innerText;"
        f" return t.includes({shown!r}) || !/(^|\\n)mask {mask_id} · /m.test(t); }}"
    )
    for _ in range(50):
        page.wait_for_function(settled, timeout=TIMEOUT)
        _idle(page)
        if _caption_mask(page) == mask_id and shown in page.locator("body").inner_text():
            return changed[0]
        page.get_by_role("button", name="Previous").first.click()
        _idle(page)
    raise AssertionError(f"the page did not come back to mask {mask_id} at {shown}")


def _curate(page: object, url: str, root: Path, run_id: int, tmp_path: Path) -> list[int]:
    """On the first mask of the queue: reject it, undo that, accept it, then paint on it with the
    canvas's brush (a mouse stroke), the database checked after each click; returns the curated ids.
    One mask is enough (a tiny classifier may find few), so the test does not depend on how many."""
    page.goto(url + "/curate")
    page.get_by_text("automatic masks, most likely wrong first").wait_for(timeout=TIMEOUT)
    _idle(page)
    assert Project(root).pseudo_masks(run_id=run_id)  # something to curate
    page.locator("[data-testid='stSelectbox']").filter(has_text="Show").click()
    page.get_by_role("option", name="all", exact=True).click()  # decided masks stay in view
    _idle(page)
    mask_id = _caption_mask(page)
    assert _decide(page, root, "Reject", mask_id)["status"] == "rejected"
    assert _decide(page, root, "Undo", mask_id)["status"] == "proposed"
    assert _decide(page, root, "Accept", mask_id)["status"] == "accepted"

    # Paint: a stroke with the mouse across the canvas (the current mask drawn on the photo), applied.
    area = int(decode_rle(next(m for m in Project(root).pseudo_masks() if m["id"] == mask_id)["rle"]).sum())
    page.get_by_text("Paint or erase").click()
    # The canvas component draws inline (Streamlit's components v2): its topmost <canvas> takes the mouse.
    surface = (
        page.locator("[data-testid='stExpander']").filter(has_text="Paint or erase").locator("canvas").last
    )
    surface.wait_for(timeout=TIMEOUT)
    surface.scroll_into_view_if_needed()
    page.wait_for_timeout(1000)  # the component draws its background picture
    picture = surface.bounding_box()
    assert picture is not None
    y = picture["y"] + picture["height"] / 2
    page.mouse.move(picture["x"] + 5, y)
    page.mouse.down()
    for k in range(1, 21):
        page.mouse.move(picture["x"] + 5 + k * (picture["width"] - 10) / 20, y, steps=2)
    page.mouse.up()
    page.get_by_text("after the stroke").wait_for(timeout=TIMEOUT)
    _screenshot(page, "curate-paint", tmp_path)
    painted = _decide(page, root, "Apply the stroke", mask_id)
    assert painted["status"] == "edited" and int(decode_rle(painted["rle"]).sum()) > area  # pixels added
    _no_exception(page)

    history = [e["action"] for e in Project(root).edit_history(mask_id)]
    assert history[-3:] == ["undo", "accept", "paint"] and "reject" in history, history
    curated = sorted(m["id"] for m in Project(root).pseudo_masks(run_id=run_id) if is_curated(m))
    assert curated == [mask_id]
    page.reload()
    caption = page.get_by_text("automatic masks, most likely wrong first")
    caption.wait_for(timeout=TIMEOUT)
    _idle(page)
    assert "1 edited" in caption.inner_text(), caption.inner_text()
    return curated


def _retrain(page: object, url: str, root: Path, curated: list[int], tmp_path: Path) -> int:
    """Retrain Mask R-CNN on the curated masks from the Train page; returns its run id."""
    page.goto(url + "/train")
    page.get_by_role("heading", name="Train").first.wait_for(timeout=TIMEOUT)
    _idle(page)
    page.locator("[data-testid='stSelectbox']").filter(has_text="Stage").first.click()
    page.get_by_role("option", name="Mask R-CNN", exact=True).click()
    _idle(page)
    page.get_by_text(f"curated masks (accepted or edited): retrain · {len(curated)} in").click()
    _idle(page)
    field = page.get_by_label("Epochs", exact=True)
    field.fill("1")
    field.press("Enter")
    _idle(page)
    before = {j.id for j in list_jobs(Project(root))}
    page.get_by_role("button", name="Retrain on curated masks").click()
    job = None
    for _ in range(int(PIPELINE_DEADLINE * 5)):
        new = [j for j in list_jobs(Project(root)) if j.id not in before]
        job = new[0] if new else None
        if job is not None and not job.active:
            break
        page.wait_for_timeout(200)
    assert job is not None and job.status == "done", job
    page.get_by_text(f"Log of job {job.id}").wait_for(timeout=TIMEOUT)  # the page follows the new job
    page.get_by_text(re.compile(r"done · 100%")).first.wait_for(timeout=TIMEOUT)
    _no_exception(page)
    _screenshot(page, "train-curated", tmp_path)

    project = Project(root)
    run = project.latest_run("maskrcnn")
    assert run.status == "done" and run.config["name"] == job.name == "maskrcnn-curated"
    assert (root / "checkpoints" / "maskrcnn-curated" / CHECKPOINT).is_file()
    # It learnt exactly the curated masks: the exported file its config names holds those and no other.
    exported = json.loads((root / run.config["coco"]).read_text())
    assert len(exported["annotations"]) == len(curated)
    return run.id


def _evaluate(page: object, url: str, root: Path, model_run: int, tmp_path: Path) -> None:
    """The panel says the evaluation is out of date; its next step evaluates the retrained model, and
    the Evaluate page shows the scores."""
    page.goto(url)
    page.get_by_text("out of date: mask r-cnn has a newer run").wait_for(timeout=TIMEOUT)
    _idle(page)
    page.get_by_role("button", name="Run the next step: Evaluation").click()
    page.get_by_role("button", name="Every step is done").wait_for(timeout=PIPELINE_DEADLINE * 1000)
    _idle(page)
    _no_exception(page)
    evaluation = Project(root).latest_run("evaluate")
    assert evaluation.status == "done" and evaluation.config["model_run"] == model_run
    assert evaluation.config["model"] == "maskrcnn-curated"
    page.get_by_text(f"run {evaluation.id} · maskrcnn-curated against the tags").wait_for(timeout=TIMEOUT)
    page.goto(url + "/evaluate")
    page.get_by_text("Evaluation against the tags").wait_for(timeout=TIMEOUT)
    page.locator("[data-testid='stDataFrame']").first.wait_for(timeout=TIMEOUT)  # the runs' scores
    _idle(page)
    _no_exception(page)
    _screenshot(page, "evaluate-curated", tmp_path)
