"""Background jobs: the argument whitelist, the status machine, a vanished process, and a real tiny
classifier job started, stopped with SIGTERM, resumed and finished through ``wsseg.jobs.launch``."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wsseg.errors import BadInputError
from wsseg.jobs import launch as jobs
from wsseg.jobs.table import VANISHED, create_job, get_job, list_jobs, report, set_status
from wsseg.stages.common import checkpoint_state
from wsseg.store.project import Project


@pytest.fixture
def empty(tmp_path: Path) -> Project:
    return Project.create(tmp_path / "project")


@pytest.mark.parametrize(
    ("kind", "options", "named"),
    [
        ("shell", {}, "kind"),
        ("classifier; rm -rf /", {}, "kind"),
        ("classifier", {"name": "../x"}, "option name"),
        ("classifier", {"name": "a;rm -rf ~"}, "option name"),
        ("classifier", {"name": "--resume"}, "option name"),
        ("classifier", {"name": "x" * 65}, "option name"),
        ("classifier", {"name": "a b"}, "option name"),
        ("classifier", {"name": "nul\0"}, "option name"),
        ("classifier", {"epochs": 10**9}, "option epochs"),
        ("classifier", {"epochs": 0}, "option epochs"),
        ("classifier", {"epochs": 2.5}, "option epochs"),
        ("classifier", {"epochs": "3"}, "option epochs"),
        ("classifier", {"epochs": True}, "option epochs"),
        ("classifier", {"batch_size": 10**6}, "option batch_size"),
        ("classifier", {"lr": float("nan")}, "option lr"),
        ("classifier", {"lr": 1e300}, "option lr"),
        ("classifier", {"lr": -0.1}, "option lr"),
        ("classifier", {"backbone": "small && reboot"}, "option backbone"),
        ("classifier", {"resume": "yes"}, "option resume"),
        ("classifier", {"workers": 4}, "option 'workers'"),
        ("classifier", {"--project": "/etc"}, "option '--project'"),
        ("maskrcnn", {"coco": "../../etc/passwd.json"}, "leaves the project"),
        ("maskrcnn", {"coco": "/etc/passwd"}, "option coco"),
        ("maskrcnn", {"coco": "missing.json"}, "option coco"),
        ("maskrcnn", {}, "exactly one of source"),
        ("maskrcnn", {"source": "truth", "coco": "x.json"}, "option coco"),
        ("ple", {"init": "../classifier"}, "option init"),
        ("classifier", {"weights": "/etc/passwd"}, "option weights"),
        ("classifier", {"weights": "../../w.pth"}, "leaves the project"),
        ("classifier", {"weights": "weights/missing.pth"}, "option weights"),
        ("classifier", {"weights": "https://example.org/w.pth"}, "option weights"),
    ],
)
def test_hostile_or_out_of_range_options_are_refused_by_name(
    empty: Project, kind: str, options: dict, named: str
) -> None:
    with pytest.raises(BadInputError) as caught:
        jobs.validate(empty, kind, options)
    assert named in str(caught.value)
    assert not list_jobs(empty)  # nothing recorded, nothing started


def test_valid_options_become_one_argument_each_without_a_shell(empty: Project) -> None:
    (empty.root / "artifacts" / "c.json").write_text("{}")
    clean = jobs.validate(
        empty,
        "maskrcnn",
        {"coco": "artifacts/c.json", "epochs": 3, "lr": 1e-3, "name": "mrc-2", "resume": True, "seed": None},
    )
    assert clean == {"coco": "artifacts/c.json", "epochs": 3, "lr": 0.001, "name": "mrc-2", "resume": True}
    argv = jobs.command(empty, "maskrcnn", clean, job_id=7)
    assert argv[:4] == [sys.executable, "-m", "wsseg", "train-maskrcnn"]
    assert argv[argv.index("--coco") + 1] == str((empty.root / "artifacts" / "c.json").resolve())
    assert argv[argv.index("--name") + 1] == "mrc-2" and argv[-2:] == ["--job", "7"]
    assert "--resume" in argv and argv.count("--resume") == 1
    # The command line parses back into the same values (the CLI is the only reader).
    from wsseg.cli import build_parser

    args = build_parser().parse_args(argv[3:])
    assert (args.epochs, args.lr, args.name, args.resume, args.job) == (3, 0.001, "mrc-2", True, 7)
    assert jobs.validate(empty, "classifier", {})["name"] == "classifier"


def test_status_changes_follow_the_machine(empty: Project) -> None:
    job = create_job(empty, "classifier", {"name": "c"})
    assert get_job(empty, job).status == "queued"
    with pytest.raises(BadInputError, match="cannot go from queued to done"):
        set_status(empty, job, "done")
    with pytest.raises(BadInputError, match="expected one of"):
        set_status(empty, job, "paused")
    assert set_status(empty, job, "running", pid=os.getpid())
    assert report(empty, job, 0.25, "epoch 1/4", {"curve": [[1, 0.5]]})
    assert get_job(empty, job, check=False).progress == 0.25  # (this pid is no job: not checked)
    assert not set_status(empty, job, "failed", expected=("queued",))  # lost a race: left alone
    assert set_status(empty, job, "done", progress=1.0)
    assert not report(empty, job, 0.5, "late", {})  # a finished job takes no more progress
    for status in ("running", "queued", "stopped", "failed"):
        with pytest.raises(BadInputError, match="cannot go from done"):
            set_status(empty, job, status)
    stopped = create_job(empty, "ple", {"name": "p"})
    set_status(empty, stopped, "stopped")
    assert set_status(empty, stopped, "queued")  # resume
    with pytest.raises(BadInputError, match="no such job"):
        get_job(empty, 999)


def test_a_running_job_whose_process_died_reads_as_failed(empty: Project) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    job = create_job(empty, "classifier", {"name": "c"})
    set_status(empty, job, "running", pid=dead.pid)
    record = get_job(empty, job)
    assert record.status == "failed" and record.message == VANISHED
    # A live process that is not this job's (its command line lacks --job N) does not count either.
    other = create_job(empty, "classifier", {"name": "d"})
    set_status(empty, other, "running", pid=os.getpid())
    assert get_job(empty, other).status == "failed"


def test_stop_and_resume_refuse_jobs_in_the_wrong_state(empty: Project) -> None:
    job = create_job(empty, "classifier", {"name": "c"})
    set_status(empty, job, "stopped")
    with pytest.raises(BadInputError, match="is not running"):
        jobs.stop_job(empty, job)
    with pytest.raises(BadInputError, match="no checkpoint to resume"):
        jobs.resume_job(empty, job)
    assert get_job(empty, job).status == "stopped"


def _wait(project: Project, job: int, until, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = get_job(project, job)
        if until(record):
            return record
        time.sleep(0.1)
    raise AssertionError(f"job {job} never got there: {get_job(project, job)}")


def test_a_real_job_reports_progress_stops_on_sigterm_and_resumes_to_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wsseg.demo.project import create_demo_project

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the child's torch threads, on a shared machine
    project = create_demo_project(tmp_path / "project", n_images=8, seed=1)
    options = {"epochs": 30, "batch_size": 4, "size": 32, "augment": "none", "name": "tiny"}
    job = jobs.start_job(project, "classifier", options)
    with pytest.raises(BadInputError, match=f"job {job} is training into it"):
        jobs.start_job(project, "classifier", options)

    # Progress arrives in the row while it trains. An epoch is reported just before its checkpoint is
    # written, so two reported epochs mean at least one checkpoint.
    running = _wait(project, job, lambda j: j.status != "running" or len(j.metrics.get("epochs", [])) >= 2)
    assert running.status == "running" and 0 < running.progress < 1, running
    assert running.metrics["steps"] == 2 and running.metrics["curve"][0][0] == 1
    jobs.stop_job(project, job)
    stopped = get_job(project, job)
    assert stopped.status == "stopped" and "resume" in stopped.message
    saved = checkpoint_state(project, "tiny")[1]["epoch"] + 1
    reported = len(stopped.metrics["epochs"])
    # An epoch is reported just before its checkpoint: the checkpoint holds every reported epoch, or
    # all but the last when the stop came between the two; never more than were reported.
    assert reported >= 2 and saved in (reported, reported - 1) and saved < 30, (saved, reported)
    assert Project(project.root).runs("classifier")[0].status == "stopped"

    jobs.resume_job(project, job)
    done = _wait(project, job, lambda j: not j.active)
    assert done.status == "done" and done.progress == 1.0, (done, jobs.log_path(project, job).read_text())
    state = checkpoint_state(project, "tiny")[1]
    assert state["epoch"] == 29 and len(state["history"]) == 30
    # One curve point per step over all 30 epochs (the resumed epochs are not counted twice).
    steps = [p[0] for p in done.metrics["curve"]]
    assert steps == list(range(1, 61))
    assert [e["epoch"] for e in done.metrics["epochs"]] == list(range(1, 31))
    runs = Project(project.root).runs("classifier")
    assert [r.status for r in runs] == ["done", "stopped"] and done.run_id == runs[0].id
    assert json.loads(json.dumps(done.args))["resume"] is True
    assert "interrupted" in jobs.log_path(project, job).read_text()


def test_retrain_on_curated_masks_exports_only_them_and_starts_mask_rcnn(tmp_path: Path) -> None:
    from tests.curation_project import tiny_project
    from wsseg.curation import queue as curation

    project = tiny_project(tmp_path / "project")
    with pytest.raises(BadInputError, match="no curated"):
        jobs.retrain_on_curated(project, {"epochs": 1})
    first = project.pseudo_masks()[0]
    curation.accept(project, first["id"], first["version"])
    job = jobs.retrain_on_curated(project, {"epochs": 1, "batch_size": 1})
    record = get_job(project, job)
    assert record.kind == "maskrcnn" and record.name == "maskrcnn-curated"
    assert record.args["coco"] == "artifacts/curated/run-2.json"
    exported = json.loads((project.root / record.args["coco"]).read_text())
    assert [a["image_id"] for a in exported["annotations"]] == [first["image_id"]]
    if get_job(project, job).active:
        jobs.stop_job(project, job)
    assert get_job(project, job).status in ("stopped", "failed", "done")


@pytest.mark.parametrize(
    ("kind", "options", "named"),
    [
        ("peaks", {"scale": 100.0}, "peaks option scale"),
        ("peaks", {"name": "../classifier"}, "peaks option name"),
        ("peaks", {"epochs": 3}, "peaks option 'epochs'"),
        ("proposals", {"workers": 0}, "proposals option workers"),
        ("proposals", {"max_proposals": "all"}, "proposals option max_proposals"),
        ("proposals", {"scales": "50;rm -rf /"}, "proposals option 'scales'"),
        ("pseudo_masks", {"strategy": "best"}, "pseudo_masks option strategy"),
        ("evaluate", {"stage": "crf"}, "evaluate option stage"),
        ("evaluate", {"split": "../val"}, "evaluate option split"),
        ("evaluate", {"split": "test"}, "evaluate option split"),
        ("evaluate", {"score_threshold": 2.0}, "evaluate option score_threshold"),
        ("ple", {"predict": 1}, "ple option predict"),
        ("classifier", {"replace": "yes"}, "classifier option replace"),
        ("classifier", {"replace": True, "resume": True}, "not both"),
        ("pipeline", {}, "give its steps"),
        ("pipeline", {"steps": []}, "pipeline step"),
        ("pipeline", {"steps": "classifier"}, "pipeline step"),
        ("pipeline", {"steps": [{"kind": "pipeline"}]}, "pipeline step 1"),
        ("pipeline", {"steps": [{"kind": "peaks", "options": {"scale": -1.0}}]}, "peaks option scale"),
        ("pipeline", {"steps": [{"kind": "peaks", "argv": ["--x"]}]}, "pipeline step 1"),
        ("pipeline", {"steps": [{"kind": "classifier"}, {"kind": "classifier"}]}, "two trainings"),
    ],
)
def test_the_new_kinds_refuse_bad_options_by_name(
    empty: Project, kind: str, options: dict, named: str
) -> None:
    with pytest.raises(BadInputError) as caught:
        jobs.validate(empty, kind, options)
    assert named in str(caught.value)
    assert not list_jobs(empty)


def test_per_image_and_pipeline_commands_parse_back_and_keep_the_steps_out_of_the_argv(demo: Path) -> None:
    from wsseg.cli import build_parser

    project = Project(demo)
    parser = build_parser()
    clean = jobs.validate(project, "proposals", {"max_proposals": 30, "workers": 1})
    args = parser.parse_args(jobs.command(project, "proposals", clean, 4)[3:])
    assert (args.max_proposals, args.workers, args.job) == (30, 1, 4)
    clean = jobs.validate(project, "evaluate", {"stage": "maskrcnn", "name": "m-2", "split": "all"})
    args = parser.parse_args(jobs.command(project, "evaluate", clean, 5)[3:])
    assert (args.stage, args.name, args.split, args.job) == ("maskrcnn", "m-2", "all", 5)
    steps = [
        {"kind": "proposals", "options": {"workers": 1}},
        {"kind": "classifier", "options": {"epochs": 2}},
    ]
    clean = jobs.validate(project, "pipeline", {"steps": steps})
    assert clean["steps"][1] == {"kind": "classifier", "options": {"name": "classifier", "epochs": 2}}
    argv = jobs.command(project, "pipeline", clean, 6)
    assert argv[3:] == ["pipeline", "--project", str(project.root.resolve()), "--job", "6"]
    assert parser.parse_args(argv[3:]).job == 6


def test_a_training_into_an_existing_run_is_refused_unless_it_replaces_and_only_trainings_resume(
    empty: Project,
) -> None:
    (empty.root / "checkpoints" / "classifier").mkdir(parents=True)
    (empty.root / "checkpoints" / "classifier" / "last.pt").write_bytes(b"")
    with pytest.raises(BadInputError, match="run name 'classifier'.*classifier-2"):
        jobs.start_job(empty, "classifier", {"epochs": 1})
    with pytest.raises(BadInputError, match="run name 'classifier'"):
        jobs.start_pipeline(empty, [{"kind": "classifier", "options": {}}])
    assert not list_jobs(empty)  # nothing recorded, nothing started
    assert "--replace" in jobs.command(
        empty, "classifier", jobs.validate(empty, "classifier", {"replace": True}), 1
    )
    job = create_job(empty, "proposals", {})
    set_status(empty, job, "failed", message="x")
    assert not jobs.can_resume(get_job(empty, job))
    with pytest.raises(BadInputError, match="stopped before its run began: run the step again"):
        jobs.resume_job(empty, job)
    job = create_job(empty, "evaluate", {})
    set_status(empty, job, "failed", message="x")
    with pytest.raises(BadInputError, match="only a training or a per-image step resumes"):
        jobs.resume_job(empty, job)


def test_a_stopped_per_image_job_resumes_its_run_without_redoing_its_images(tmp_path: Path) -> None:
    """The proposals step stopped after two images (Ctrl-C in its progress, as a SIGTERM does in a job):
    Resume starts ``wsseg proposals --resume RUN`` in the same row, and the run ends with every image,
    the two it had kept not computed again."""
    from wsseg.demo.project import create_demo_project
    from wsseg.stages.make_proposals import make_proposals

    project = create_demo_project(tmp_path / "project", n_images=6, seed=3)

    def stop_after_two(done: int, total: int) -> None:
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        make_proposals(project, progress=stop_after_two)
    run = project.runs("proposals")[0]
    assert run.status == "stopped" and len(project.committed_images(run.id)) == 2
    kept = {
        i: project.artifact("proposals", run.id, i, ".json").stat().st_mtime_ns
        for i in project.committed_images(run.id)
    }
    job = create_job(project, "proposals", {"workers": 1})
    set_status(project, job, "running", message="proposals")
    assert report(project, job, 2 / 6, "proposals: 2/6 images", {}, run.id)
    set_status(project, job, "stopped", message="stopped")
    assert jobs.can_resume(get_job(project, job))
    jobs.resume_job(project, job)
    done = _wait(project, job, lambda j: not j.active)
    assert done.status == "done", (done, jobs.log_path(project, job).read_text())
    assert done.args["resume"] == run.id and done.run_id == run.id
    run = project.runs("proposals")[0]
    assert run.status == "done" and run.metrics["images"] == 6 and len(project.runs("proposals")) == 1
    assert set(project.committed_images(run.id)) == {r.id for r in project.images()}
    for image_id, stamp in kept.items():
        assert project.artifact("proposals", run.id, image_id, ".json").stat().st_mtime_ns == stamp


def test_the_log_tail_keeps_the_last_lines_and_a_progress_bar_s_last_state(empty: Project) -> None:
    path = jobs.log_path(empty, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"line {k}\n" for k in range(100)) + "bar 10%\rbar 50%\rbar 100%\n")
    assert jobs.log_tail(empty, 3, lines=3) == "line 98\nline 99\nbar 100%"
    assert jobs.log_tail(empty, 4) == ""  # no log yet


def test_weights_are_a_torchvision_name_or_a_file_inside_the_project(empty: Project) -> None:
    (empty.root / "weights").mkdir()
    (empty.root / "weights" / "mnv2.pth").write_bytes(b"\0")
    for name in ("imagenet", "DEFAULT", "IMAGENET1K_V2"):
        assert jobs.validate(empty, "classifier", {"weights": name})["weights"] == name
    clean = jobs.validate(empty, "ple", {"backbone": "mobilenet_v2", "weights": "weights/mnv2.pth"})
    argv = jobs.command(empty, "ple", clean, job_id=3)
    assert argv[argv.index("--weights") + 1] == str((empty.root / "weights" / "mnv2.pth").resolve())
    assert argv[argv.index("--backbone") + 1] == "mobilenet_v2"
    named = jobs.command(empty, "classifier", jobs.validate(empty, "classifier", {"weights": "DEFAULT"}), 4)
    assert named[named.index("--weights") + 1] == "DEFAULT"


def test_a_frozen_backbone_needs_weights_and_becomes_one_flag(empty: Project) -> None:
    clean = jobs.validate(empty, "classifier", {"weights": "DEFAULT", "frozen_backbone": True})
    argv = jobs.command(empty, "classifier", clean, job_id=5)
    assert argv.count("--frozen-backbone") == 1 and argv[argv.index("--weights") + 1] == "DEFAULT"
    off = jobs.command(empty, "classifier", jobs.validate(empty, "classifier", {"frozen_backbone": False}), 6)
    assert "--frozen-backbone" not in off
    for bad in ({"frozen_backbone": True}, {"weights": "DEFAULT", "frozen_backbone": "yes"}):
        with pytest.raises(BadInputError, match="frozen_backbone"):
            jobs.validate(empty, "classifier", bad)
