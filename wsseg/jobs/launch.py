"""Background training jobs: start, stop and resume ``wsseg train-*`` as separate processes.

A job is ``python -m wsseg <command> ... --job ID`` started with ``subprocess.Popen`` from an
argument list (never a shell) in a new session, its output appended to ``artifacts/jobs/job-ID.log``.
Every option comes through ``validate``: a whitelist of names per kind, numbers range-checked,
choices from fixed sets, run names matching ``NAME`` and files that must lie inside the project, so no
string given by a user reaches the command line or a file path unchecked. The child reports its
progress and loss curve into the job's row (``wsseg.jobs.runner``); stopping sends SIGTERM to its
process group (the last epoch's checkpoint stays), resuming starts it again with ``--resume``.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import wsseg
from wsseg.curation.export import export_curated_coco
from wsseg.errors import BadInputError
from wsseg.jobs.table import ACTIVE, create_job, get_job, job_process_alive, list_jobs, set_status
from wsseg.stages.make_pseudo_masks import STAGE
from wsseg.store.project import Project
from wsseg.training.engine import CHECKPOINT

COMMANDS: dict[str, str] = {
    "classifier": "train-classifier",
    "maskrcnn": "train-maskrcnn",
    "ple": "train-ple",
}
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
AUGMENTS = ("flips", "hflip", "colour", "none", "flips,colour", "hflip,colour")


class _Int:
    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, high

    def __call__(self, label: str, value: Any, project: Project) -> int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise BadInputError(label, f"expected a whole number, got {value!r}")
        if not self.low <= int(value) <= self.high:
            raise BadInputError(label, f"expected {self.low} to {self.high}, got {value}")
        return int(value)


class _Float:
    def __init__(self, low: float, high: float) -> None:
        self.low, self.high = low, high

    def __call__(self, label: str, value: Any, project: Project) -> float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise BadInputError(label, f"expected a finite number, got {value!r}")
        if not self.low <= float(value) <= self.high:
            raise BadInputError(label, f"expected {self.low:g} to {self.high:g}, got {value}")
        return float(value)


class _Choice:
    def __init__(self, *choices: str) -> None:
        self.choices = choices

    def __call__(self, label: str, value: Any, project: Project) -> str:
        if value not in self.choices:
            raise BadInputError(label, f"expected one of {', '.join(self.choices)}, got {value!r}")
        return str(value)


def _name(label: str, value: Any, project: Project) -> str:
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise BadInputError(
            label, f"expected 1 to 64 letters, digits, '_' or '-' (not first), got {str(value)[:80]!r}"
        )
    return value


def _flag(label: str, value: Any, project: Project) -> bool:
    if not isinstance(value, bool):
        raise BadInputError(label, f"expected true or false, got {value!r}")
    return value


def _project_json(label: str, value: Any, project: Project) -> str:
    """A .json file given relative to the project folder, which must exist inside it."""
    if not isinstance(value, str) or not value or "\0" in value or Path(value).is_absolute():
        raise BadInputError(label, f"expected a file path relative to the project folder, got {value!r}")
    try:
        path = project.path(value)
    except BadInputError:
        raise BadInputError(label, f"{value!r} leaves the project folder") from None
    if path.suffix != ".json" or not path.is_file():
        raise BadInputError(label, f"expected an existing .json file inside the project, got {value!r}")
    return value


COMMON = {
    "epochs": _Int(1, 1000),
    "batch_size": _Int(1, 1024),
    "lr": _Float(1e-7, 1.0),
    "seed": _Int(0, 2**31 - 1),
    "name": _name,
    "resume": _flag,
    "augment": _Choice(*AUGMENTS),
}
OPTIONS: dict[str, dict[str, Any]] = {
    "classifier": {
        **COMMON,
        "backbone": _Choice("small", "resnet18", "resnet50", "mobilenet_v3"),
        "pooling": _Choice("average", "peaks"),
        "size": _Int(16, 2048),
    },
    "maskrcnn": {
        **COMMON,
        "backbone": _Choice("mobilenet_v3", "resnet50", "small"),
        "init": _name,
        "image_size": _Int(32, 2048),
        "source": _Choice("pseudo", "truth"),
        "coco": _project_json,
    },
    "ple": {
        **COMMON,
        "backbone": _Choice("small", "resnet18", "resnet50", "mobilenet_v3"),
        "size": _Int(16, 2048),
        "init": _name,
        "full": _flag,
        "no_background": _flag,
        "labels_from": _name,
        "confidence": _Float(0.0, 1.0),
    },
}


def validate(project: Project, kind: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options of a ``kind`` job, checked and normalised (``name`` defaults to the kind).

    Raises ``BadInputError`` naming the option for an unknown kind or option, a value of the wrong
    type, out of range or not one of the choices, a name that is not ``NAME``, or a file outside the
    project."""
    if kind not in OPTIONS:
        raise BadInputError("kind", f"expected one of {', '.join(OPTIONS)}, got {str(kind)[:80]!r}")
    known = OPTIONS[kind]
    clean: dict[str, Any] = {"name": kind}
    for key, value in options.items():
        if key not in known:
            raise BadInputError(f"{kind} option {str(key)[:80]!r}", f"unknown; expected {', '.join(known)}")
        if value is not None:
            clean[key] = known[key](f"{kind} option {key}", value, project)
    if kind == "maskrcnn" and ("coco" in clean) == ("source" in clean):
        raise BadInputError("maskrcnn options", "give exactly one of source (pseudo, truth) or coco")
    return clean


def command(project: Project, kind: str, options: dict[str, Any], job_id: int) -> list[str]:
    """The argument list of job ``job_id`` (``options`` already validated): no shell ever parses it."""
    argv = [sys.executable, "-m", "wsseg", COMMANDS[kind], "--project", str(project.root.resolve())]
    for key, value in sorted(options.items()):
        flag = "--" + key.replace("_", "-")
        if key == "coco":
            argv += [flag, str(project.path(value))]
        elif isinstance(value, bool):
            argv += [flag] if value else []
        else:
            argv += [flag, str(value)]
    return argv + ["--job", str(job_id)]


def log_path(project: Project, job_id: int) -> Path:
    return project.root / "artifacts" / "jobs" / f"job-{job_id}.log"


def _busy(project: Project, name: str, other_than: int | None = None) -> None:
    for job in list_jobs(project, limit=200):
        if job.active and job.name == name and job.id != other_than:
            raise BadInputError(
                f"name {name!r}", f"job {job.id} is training into it; stop it or choose another"
            )


def _launch(project: Project, job_id: int, kind: str, options: dict[str, Any]) -> None:
    """Start the job's process (queued -> running); a launch that fails leaves the row failed."""
    log = log_path(project, job_id)
    log.parent.mkdir(parents=True, exist_ok=True)
    package_parent = str(Path(wsseg.__file__).resolve().parents[1])  # the child runs this same code
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [package_parent, os.environ.get("PYTHONPATH")])),
    }
    try:
        with open(log, "ab") as out:
            process = subprocess.Popen(
                command(project, kind, options, job_id),
                shell=False,
                start_new_session=True,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=project.root,
                env=env,
            )
    except OSError as error:
        set_status(project, job_id, "failed", message=f"could not start: {error}")
        raise BadInputError(f"job {job_id}", f"could not start its process ({error})") from error
    set_status(project, job_id, "running", expected=("queued",), pid=process.pid, message="starting")


def start_job(project: Project, kind: str, options: dict[str, Any]) -> int:
    """Validate ``options``, record a job and start it in the background; returns the job id."""
    clean = validate(project, kind, options)
    _busy(project, clean["name"])
    if clean.get("resume"):
        _checkpoint_exists(project, clean["name"])
    job_id = create_job(project, kind, clean)
    _launch(project, job_id, kind, clean)
    return job_id


def _checkpoint_exists(project: Project, name: str) -> None:
    if not (project.root / "checkpoints" / name / CHECKPOINT).is_file():
        raise BadInputError(f"checkpoints/{name}", "has no checkpoint to resume from; start afresh")


def stop_job(project: Project, job_id: int, wait: float = 10.0) -> None:
    """SIGTERM to the job's process group, SIGKILL after ``wait`` seconds; the row ends ``stopped``.

    The child records ``stopped`` itself; when it could not (killed before it set up, or too slow)
    this does. The checkpoint of the last finished epoch stays for ``resume_job``."""
    job = get_job(project, job_id)
    if not job.active:
        raise BadInputError(f"job {job_id}", f"is not running ({job.status})")
    if job.pid is not None and job_process_alive(job.pid, job_id):
        _signal_group(job.pid, signal.SIGTERM)
        deadline = time.monotonic() + wait
        while job_process_alive(job.pid, job_id) and time.monotonic() < deadline:
            time.sleep(0.05)
        if job_process_alive(job.pid, job_id):
            _signal_group(job.pid, signal.SIGKILL)
            while job_process_alive(job.pid, job_id) and time.monotonic() < deadline + 5:
                time.sleep(0.05)
    set_status(project, job_id, "stopped", expected=ACTIVE, message="stopped")


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)  # the job leads its own session: pgid == pid


def resume_job(project: Project, job_id: int) -> None:
    """Start a stopped or failed job again with ``--resume`` (from its last checkpoint), same row."""
    job = get_job(project, job_id)
    if job.status not in ("stopped", "failed"):
        raise BadInputError(
            f"job {job_id}", f"only a stopped or failed job resumes, this one is {job.status}"
        )
    options = validate(project, job.kind, {**job.args, "resume": True})
    _busy(project, options["name"], other_than=job_id)
    _checkpoint_exists(project, options["name"])
    set_status(project, job_id, "queued", args=options, pid=None, message="resuming")
    _launch(project, job_id, job.kind, options)


def retrain_on_curated(project: Project, options: dict[str, Any], run_id: int | None = None) -> int:
    """A Mask R-CNN job on the curated masks (accepted or edited) of a pseudo-masks run (default: the
    newest finished one), exported to ``artifacts/curated/run-<id>.json``; returns the job id."""
    runs = [r for r in project.runs(STAGE) if r.status == "done" and (run_id is None or r.id == run_id)]
    if not runs:
        raise BadInputError("pseudo-masks run", "none finished; run the pseudo-mask stage and curate first")
    coco = project.artifacts("curated", runs[0].id).with_suffix(".json")  # artifacts/curated/run-<id>.json
    relative = coco.relative_to(project.root).as_posix()
    document = export_curated_coco(project, runs[0].id, coco)
    if not document["annotations"]:
        raise BadInputError(
            f"pseudo-masks run {runs[0].id}", "has no curated (accepted or edited) masks; curate some first"
        )
    return start_job(project, "maskrcnn", {"name": "maskrcnn-curated", **options, "coco": relative})
