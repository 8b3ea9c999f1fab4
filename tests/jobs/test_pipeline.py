"""Real background jobs of the per-image steps and the pipeline driver, on tiny demo projects: a
proposals job reports its images into its row and ends done; a pipeline runs its steps one after
another and stops at the first that fails, naming it; stopping a pipeline stops the step it runs.
Only end states are asserted, each waited for with a generous deadline (the machine is shared)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from wsseg.demo.project import create_demo_project
from wsseg.jobs import launch as jobs
from wsseg.jobs.table import JobRecord, get_job
from wsseg.store.project import Project

DEADLINE = 400.0


def _ended(project: Project, job: int, timeout: float = DEADLINE) -> JobRecord:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = get_job(project, job)
        if not record.active:
            return record
        time.sleep(0.5)
    raise AssertionError(f"job {job} did not end: {get_job(project, job)}\n{jobs.log_tail(project, job)}")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the children's torch threads, on a shared machine
    return create_demo_project(tmp_path / "project", n_images=5, seed=6)


def test_a_proposals_job_reports_its_images_and_ends_done(project: Project) -> None:
    job = jobs.start_job(project, "proposals", {"workers": 1, "max_proposals": 20})
    done = _ended(project, job)
    assert done.status == "done", (done, jobs.log_tail(project, job))
    run = project.latest_run("proposals")
    assert done.progress == 1.0 and done.run_id == run.id and run.metrics["images"] == 5
    assert "5/5 images" in done.message and done.metrics == {"images_done": 5, "images": 5}
    assert len(list(project.artifacts("proposals", run.id).glob("*.json"))) == 5 + 1  # and config.json


def test_a_pipeline_runs_its_steps_in_turn_and_stops_at_the_first_that_fails(project: Project) -> None:
    steps = [
        {"kind": "proposals", "options": {"workers": 1, "max_proposals": 10}},
        {"kind": "pseudo_masks", "options": {"workers": 1}},  # no peaks run: fails
        {"kind": "proposals", "options": {"workers": 1}},  # never started
    ]
    pipeline = _ended(project, jobs.start_pipeline(project, steps))
    assert pipeline.status == "failed", (pipeline, jobs.log_tail(project, pipeline.id))
    first, second, third = pipeline.metrics["steps"]
    assert first["status"] == "done" and get_job(project, first["job"]).status == "done"
    failed = get_job(project, second["job"])
    assert second["status"] == failed.status == "failed" and "no finished peaks run" in failed.message
    assert third == {"kind": "proposals", "job": None, "status": "waiting"}
    assert pipeline.message.startswith(f"step 2/3, pseudo masks (job {failed.id}) failed:")
    assert [r.status for r in project.runs("proposals")] == ["done"]


def test_stopping_a_pipeline_stops_the_step_it_runs(project: Project) -> None:
    steps = [
        {"kind": "classifier", "options": {"epochs": 1000, "batch_size": 5, "size": 32, "augment": "none"}}
    ]
    pipeline = jobs.start_pipeline(project, steps)
    deadline = time.monotonic() + DEADLINE
    while jobs.pipeline_child(get_job(project, pipeline)) is None and time.monotonic() < deadline:
        time.sleep(0.5)
    child = jobs.pipeline_child(get_job(project, pipeline))
    assert child is not None, jobs.log_tail(project, pipeline)
    jobs.stop_job(project, pipeline)
    assert get_job(project, pipeline).status == "stopped"
    assert not _ended(project, child, 60).active
    assert get_job(project, child).status == "stopped"
