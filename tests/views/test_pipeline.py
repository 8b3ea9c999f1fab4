"""``wsseg.views.pipeline``: each step's state computed on a real tiny project with real runs (done, not
run, out of date after a newer upstream run or new images, failed, running), what is left to run, and
the jobs planned for it (validated as ``wsseg.jobs.launch`` would)."""

from __future__ import annotations

import dataclasses
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wsseg.demo.project import create_demo_project
from wsseg.jobs import launch
from wsseg.jobs.table import create_job, get_job, list_jobs, set_status
from wsseg.methods.prm import PRMConfig
from wsseg.methods.proposals import ProposalConfig
from wsseg.models.classifier import ClassifierConfig
from wsseg.stages.make_peaks import make_peaks
from wsseg.stages.make_proposals import make_proposals
from wsseg.stages.make_pseudo_masks import make_pseudo_masks
from wsseg.stages.train_classifier import train_classifier
from wsseg.store.project import Project
from wsseg.training.engine import TrainConfig
from wsseg.views.pipeline import (
    STEPS,
    consumed,
    default_settings,
    pipeline_state,
    plan,
    remaining,
    result_summary,
)
from wsseg.views.uploads import import_uploads

KINDS = [step.kind for step in STEPS]


def _classifier(project: Project, name: str = "classifier") -> None:
    config = ClassifierConfig(num_classes=4, backbone="small", small_width=8, peak_stimulation=False)
    train_classifier(project, config, TrainConfig(epochs=1, batch_size=6, seed=0), name=name, augment=None)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 demo images through the classifier, peaks, proposals and pseudo masks (real runs)."""
    root = tmp_path_factory.mktemp("pipeline") / "project"
    project = create_demo_project(root, n_images=6, seed=5)
    _classifier(project)
    make_peaks(project, prm_config=PRMConfig(class_threshold=None, max_peaks=4))
    make_proposals(project, ProposalConfig(max_proposals=20))
    make_pseudo_masks(project)
    return root


@pytest.fixture
def project(made: Path, tmp_path: Path) -> Project:
    copy = tmp_path / "project"
    shutil.copytree(made, copy)
    return Project(copy)


def _states(project: Project, jobs=None) -> dict[str, object]:
    return {s.step.kind: s for s in pipeline_state(project, list_jobs(project) if jobs is None else jobs)}


def test_steps_that_ran_are_done_and_the_rest_not_run(project: Project) -> None:
    states = _states(project)
    assert [states[k].state for k in KINDS] == ["done"] * 4 + ["not run"] * 3
    assert remaining(list(states.values())) == ["maskrcnn", "ple", "evaluate"]
    peaks = project.latest_run("peaks")
    assert states["peaks"].run.id == peaks.id
    stored = sum(len(project.peaks(r.id, peaks.id)) for r in project.images())
    assert result_summary(peaks) == f"run {peaks.id} · {stored} peaks on 6 images"
    pseudo = project.latest_run("pseudo_masks")
    masks = len(project.pseudo_masks(run_id=pseudo.id))
    assert f"{masks} pseudo masks on 6 images" in result_summary(pseudo)


def test_a_newer_classifier_puts_its_peaks_out_of_date_and_everything_after_them_left_to_run(
    project: Project,
) -> None:
    old = project.latest_run("classifier")
    peaks = project.latest_run("peaks")
    assert consumed({"classifier": project.runs("classifier")}, "peaks", peaks, "classifier") == old.id
    _classifier(project, "classifier-2")
    new = project.latest_run("classifier")
    states = _states(project)
    assert states["peaks"].state == "out of date"
    assert f"newer run ({new.id}) than the one run {peaks.id} used ({old.id})" in states["peaks"].message
    assert states["classifier"].state == "done" and states["pseudo_masks"].state == "done"
    assert remaining(list(states.values())) == ["peaks", "pseudo_masks", "maskrcnn", "ple", "evaluate"]
    # A run stored before runs named their upstream run's id is read by its name and start time.
    older = dataclasses.replace(
        peaks, config={k: v for k, v in peaks.config.items() if k != "classifier_run"}
    )
    assert consumed({"classifier": project.runs("classifier")}, "peaks", older, "classifier") == old.id


def test_failed_jobs_and_runs_fail_their_step_with_the_message_and_running_jobs_show_progress(
    project: Project,
) -> None:
    failed = create_job(project, "maskrcnn", {"name": "maskrcnn"})
    set_status(project, failed, "failed", message="dataset: 0 item(s) is fewer than one batch")
    run = project.start_run("proposals", {})
    project.finish_run(run, "failed")
    running = create_job(project, "evaluate", {"stage": "maskrcnn", "name": "maskrcnn"})
    set_status(project, running, "running", progress=0.4, message="evaluate maskrcnn: 2/5 images")
    jobs = [get_job(project, j, check=False) for j in (failed, running)]  # (no process to check)
    states = _states(project, jobs)
    assert states["maskrcnn"].state == "failed"
    assert states["maskrcnn"].message == f"job {failed} failed: dataset: 0 item(s) is fewer than one batch"
    assert states["proposals"].state == "failed" and states["proposals"].message == f"run {run} failed"
    assert states["evaluate"].state == "running" and states["evaluate"].progress == pytest.approx(0.4)
    assert states["evaluate"].message == "evaluate maskrcnn: 2/5 images"
    # Failed proposals: the pseudo masks that read them are redone after them, and the evaluation of
    # the failed Mask R-CNN after it.
    assert remaining(list(states.values())) == ["proposals", "pseudo_masks", "maskrcnn", "ple", "evaluate"]


def test_images_added_after_a_run_put_it_out_of_date(project: Project) -> None:
    picture = np.zeros((40, 50, 3), np.uint8)
    picture[10:30, 10:40] = (200, 30, 30)
    png = io.BytesIO()
    Image.fromarray(picture).save(png, format="PNG")
    report = import_uploads(
        project, [("late.png", png.getvalue()), ("tags.csv", b"filename,tags\nlate.png,disc\n")]
    )
    assert len(report.imported) == 1
    states = _states(project)
    for kind in ("classifier", "peaks", "proposals", "pseudo_masks"):
        assert states[kind].state == "out of date" and "images were added" in states[kind].message
    assert remaining(list(states.values())) == KINDS


def test_the_plan_names_new_runs_and_chains_the_steps_that_read_them(project: Project) -> None:
    settings = default_settings(project)
    steps = plan(project, ["maskrcnn", "ple", "evaluate"], settings)
    assert [s["kind"] for s in steps] == ["maskrcnn", "ple", "evaluate"]
    maskrcnn, ple, evaluate = (s["options"] for s in steps)
    assert (
        maskrcnn["name"] == "maskrcnn" and maskrcnn["init"] == "classifier" and maskrcnn["source"] == "pseudo"
    )
    assert maskrcnn["batch_size"] == settings["maskrcnn"]["batch_size"] <= project.count_images(split="train")
    assert ple["predict"] is True and ple["init"] == "classifier"
    assert evaluate == {**settings["evaluate"], "stage": "maskrcnn", "name": "maskrcnn"}
    for step in steps:  # the jobs accept them as they are
        launch.validate(project, step["kind"], step["options"])
    # A classifier exists: a new one is classifier-2, or classifier-3 while a job trains into -2; the
    # peaks read the new one.
    assert plan(project, ["classifier", "peaks"], settings)[1]["options"]["name"] == "classifier-2"
    busy = create_job(project, "classifier", {"name": "classifier-2"})
    set_status(project, busy, "running")
    steps = plan(project, ["classifier", "peaks"], settings, [get_job(project, busy, check=False)])
    assert steps[0]["options"]["name"] == steps[1]["options"]["name"] == "classifier-3"


def test_an_evaluation_against_the_tags_is_summed_up_in_words(project: Project) -> None:
    run_id = project.start_run("evaluate", {"stage": "maskrcnn", "model": "m"})
    metrics = {
        "against": "tags",
        "images": 6,
        "tag_precision": 0.5,
        "tag_recall": 0.25,
        "instances_per_image": 1.0,
    }
    project.finish_run(run_id, "done", metrics)
    run = project.latest_run("evaluate")
    assert (
        result_summary(run) == f"run {run_id} · m against the tags: precision 0.50, recall 0.25 on 6 images"
    )
    project.finish_run(run_id, "done", {**metrics, "tag_precision": None, "tag_recall": 0.0})
    assert "no class found" in result_summary(project.latest_run("evaluate"))


def test_a_shipped_model_installed_without_training_says_so(project: Project) -> None:
    run_id = project.start_run("classifier", {"name": "classifier", "source": "demo-classifier.pt"})
    project.finish_run(run_id, "done", {"installed_from": "demo-classifier.pt"})
    summary = result_summary(project.latest_run("classifier"))
    assert summary == f"run {run_id} · classifier · installed from demo-classifier.pt"
