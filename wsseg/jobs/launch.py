"""Background jobs: start, stop and resume every pipeline step (``wsseg <command>``) as a separate process.

A job is ``python -m wsseg <command> ... --job ID`` started with ``subprocess.Popen`` from an
argument list (never a shell) in a new session, its output appended to ``artifacts/jobs/job-ID.log``.
Every option comes through ``validate``: a whitelist of names per kind, numbers range-checked,
choices from fixed sets, run names matching ``NAME``, splits the project has and files that must lie
inside the project, so no string given by a user reaches the command line or a file path unchecked.
The child reports its progress (and a training's loss curve) into the job's row
(``wsseg.jobs.runner``); stopping sends SIGTERM to its process group (a training's last epoch's
checkpoint stays), resuming a training starts it again with ``--resume``. A training never replaces
an existing run of its name unless asked to (``replace``). A ``pipeline`` job (``start_pipeline``)
runs several steps one after another, each a job of its own (``wsseg.jobs.pipeline``).
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
from wsseg.jobs.runner import RESUMABLE
from wsseg.jobs.table import ACTIVE, JobRecord, create_job, get_job, job_process_alive, list_jobs, set_status
from wsseg.stages.common import next_run_name, run_exists
from wsseg.stages.make_pseudo_masks import STAGE
from wsseg.store.project import Project
from wsseg.store.weights import WEIGHT_SUFFIXES
from wsseg.training.engine import CHECKPOINT

COMMANDS: dict[str, str] = {
    "classifier": "train-classifier",
    "peaks": "peaks",
    "proposals": "proposals",
    "pseudo_masks": "pseudo-masks",
    "maskrcnn": "train-maskrcnn",
    "ple": "train-ple",
    "evaluate": "evaluate",
    "pipeline": "pipeline",
}
#: What the app calls each kind of job.
TITLES: dict[str, str] = {
    "classifier": "classifier",
    "peaks": "peaks and PRMs",
    "proposals": "proposals",
    "pseudo_masks": "pseudo masks",
    "maskrcnn": "Mask R-CNN",
    "ple": "pixel-label estimator",
    "evaluate": "evaluation",
    "pipeline": "pipeline",
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


def _split(label: str, value: Any, project: Project) -> str:
    """A split the project's images have, or "all" (every image)."""
    splits = list(project.split_counts())
    if value != "all" and value not in splits:
        raise BadInputError(
            label, f"expected all or a split of the project ({', '.join(splits)}), got {value!r}"
        )
    return str(value)


def _project_file(label: str, value: Any, project: Project, suffixes: tuple[str, ...], expected: str) -> str:
    """``value``: an existing file with one of ``suffixes``, given relative to the project folder and
    inside it; ``expected`` says what was wanted when it is not even a relative path."""
    if not isinstance(value, str) or not value or "\0" in value or Path(value).is_absolute():
        raise BadInputError(label, f"expected {expected}, got {value!r}")
    try:
        path = project.path(value)
    except BadInputError:
        raise BadInputError(label, f"{value!r} leaves the project folder") from None
    if path.suffix not in suffixes or not path.is_file():
        kinds = " or ".join(suffixes)
        raise BadInputError(label, f"expected an existing {kinds} file inside the project, got {value!r}")
    return value


def _project_json(label: str, value: Any, project: Project) -> str:
    """A .json file given relative to the project folder, which must exist inside it."""
    return _project_file(label, value, project, (".json",), "a file path relative to the project folder")


def _weights(label: str, value: Any, project: Project) -> str:
    """A torchvision weight name (the stage checks torch's cache), or a weights file inside the project."""
    if isinstance(value, str) and (
        value in ("imagenet", "DEFAULT", "COCO_V1") or value.startswith("IMAGENET1K_")
    ):
        return value
    return _project_file(label, value, project, WEIGHT_SUFFIXES, "a weight name or a file inside the project")


COMMON = {
    "epochs": _Int(1, 1000),
    "batch_size": _Int(1, 1024),
    "lr": _Float(1e-7, 1.0),
    "seed": _Int(0, 2**31 - 1),
    "name": _name,
    "resume": _flag,
    "replace": _flag,
    "augment": _Choice(*AUGMENTS),
}
WORKERS = _Int(1, 16)
RUN = _Int(1, 2**31 - 1)  # a per-image step's --resume: the run it continues
#: The per-image steps: a stopped or failed one resumes its run (``--resume RUN``), keeping its images.
PER_IMAGE = ("peaks", "proposals", "pseudo_masks")
OPTIONS: dict[str, dict[str, Any]] = {
    "classifier": {
        **COMMON,
        "backbone": _Choice("small", "resnet18", "resnet50", "mobilenet_v3", "mobilenet_v2"),
        "weights": _weights,
        "frozen_backbone": _flag,
        "pooling": _Choice("average", "peaks"),
        "size": _Int(16, 2048),
    },
    "peaks": {"name": _name, "scale": _Float(0.25, 8.0), "resume": RUN},
    "proposals": {"max_proposals": _Int(1, 5000), "workers": WORKERS, "resume": RUN},
    "pseudo_masks": {"strategy": _Choice("prm", "wise"), "workers": WORKERS, "resume": RUN},
    "maskrcnn": {
        **COMMON,
        "backbone": _Choice("mobilenet_v3", "mobilenet_v2", "resnet50", "small", "maskrcnn_resnet50_fpn_v2"),
        "weights": _weights,
        "init": _name,
        "image_size": _Int(32, 2048),
        "source": _Choice("pseudo", "truth"),
        "coco": _project_json,
    },
    "ple": {
        **COMMON,
        "backbone": _Choice("small", "resnet18", "resnet50", "mobilenet_v3", "mobilenet_v2"),
        "weights": _weights,
        "size": _Int(16, 2048),
        "init": _name,
        "full": _flag,
        "no_background": _flag,
        "labels_from": _name,
        "confidence": _Float(0.0, 1.0),
        "predict": _flag,
    },
    "evaluate": {
        "stage": _Choice("maskrcnn", "ple"),
        "name": _name,
        "split": _split,
        "score_threshold": _Float(0.0, 1.0),
    },
    "pipeline": {"steps": None},  # checked by ``_steps``
}
#: The steps a pipeline job may run.
STEP_KINDS = tuple(kind for kind in OPTIONS if kind != "pipeline")
MAX_STEPS = 20


def _steps(label: str, value: Any, project: Project) -> list[dict[str, Any]]:
    """A pipeline's steps: 1 to ``MAX_STEPS`` of {"kind": one of ``STEP_KINDS``, "options": {...}},
    each one's options validated as that kind's job."""
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_STEPS:
        raise BadInputError(label, f"expected a list of 1 to {MAX_STEPS} steps, got {str(value)[:80]!r}")
    steps = []
    for k, step in enumerate(value, 1):
        if (
            not isinstance(step, dict)
            or set(step) - {"kind", "options"}
            or step.get("kind") not in STEP_KINDS
        ):
            raise BadInputError(
                f"{label} {k}",
                f"expected {{kind: one of {', '.join(STEP_KINDS)}, options}}, got {str(step)[:80]!r}",
            )
        options = step.get("options") or {}
        if not isinstance(options, dict):
            raise BadInputError(f"{label} {k} options", f"expected a mapping, got {str(options)[:80]!r}")
        steps.append({"kind": step["kind"], "options": validate(project, step["kind"], options)})
    names = [s["options"]["name"] for s in steps if s["kind"] in RESUMABLE]
    if len(names) != len(set(names)):
        raise BadInputError(label, f"two trainings of one run name ({', '.join(names)})")
    return steps


def validate(project: Project, kind: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options of a ``kind`` job, checked and normalised (a training's ``name`` defaults to the kind).

    Raises ``BadInputError`` naming the option for an unknown kind or option, a value of the wrong
    type, out of range or not one of the choices, a name that is not ``NAME``, a split the project
    lacks, or a file outside the project."""
    if kind not in OPTIONS:
        raise BadInputError("kind", f"expected one of {', '.join(OPTIONS)}, got {str(kind)[:80]!r}")
    known = OPTIONS[kind]
    clean: dict[str, Any] = {"name": kind} if kind in RESUMABLE else {}
    for key, value in options.items():
        if key not in known:
            raise BadInputError(f"{kind} option {str(key)[:80]!r}", f"unknown; expected {', '.join(known)}")
        if key == "steps":
            clean[key] = _steps("pipeline step", value, project)
        elif value is not None:
            clean[key] = known[key](f"{kind} option {key}", value, project)
    if kind == "maskrcnn" and ("coco" in clean) == ("source" in clean):
        raise BadInputError("maskrcnn options", "give exactly one of source (pseudo, truth) or coco")
    if kind == "pipeline" and "steps" not in clean:
        raise BadInputError("pipeline options", "give its steps")
    if clean.get("frozen_backbone") and not clean.get("weights"):
        raise BadInputError("frozen_backbone", "needs weights: a random backbone would stay random")
    if clean.get("resume") and clean.get("replace"):
        raise BadInputError(f"{kind} options", "resume continues a run, replace starts it afresh: not both")
    return clean


def command(project: Project, kind: str, options: dict[str, Any], job_id: int) -> list[str]:
    """The argument list of job ``job_id`` (``options`` already validated): no shell ever parses it."""
    argv = [sys.executable, "-m", "wsseg", COMMANDS[kind], "--project", str(project.root.resolve())]
    for key, value in sorted(options.items()):
        if key == "steps":
            continue  # the pipeline's steps stay in its row, where its driver reads them
        flag = "--" + key.replace("_", "-")
        if key == "coco" or key == "weights" and Path(value).suffix in WEIGHT_SUFFIXES:
            argv += [flag, str(project.path(value))]
        elif isinstance(value, bool):
            argv += [flag] if value else []
        else:
            argv += [flag, str(value)]
    return argv + ["--job", str(job_id)]


def log_path(project: Project, job_id: int) -> Path:
    return project.root / "artifacts" / "jobs" / f"job-{job_id}.log"


def log_tail(project: Project, job_id: int, lines: int = 40, limit: int = 64_000) -> str:
    """The last ``lines`` lines of job ``job_id``'s log (of its last ``limit`` bytes; progress bars'
    carriage returns keep only their last state); empty when it has none yet."""
    path = log_path(project, job_id)
    try:
        with open(path, "rb") as log:
            log.seek(max(0, path.stat().st_size - limit))
            text = log.read().decode("utf-8", "replace")
    except OSError:
        return ""
    tail = text.rstrip("\n").split("\n")[-lines:]  # (splitlines would split at the bars' \r too)
    return "\n".join(line.rstrip("\r").rsplit("\r", 1)[-1] for line in tail)


def training_names(project: Project) -> list[str]:
    """The run names that active training jobs train into."""
    return [j.name for j in list_jobs(project, limit=200) if j.active and j.kind in RESUMABLE]


def _busy(project: Project, name: str, other_than: int | None = None) -> None:
    for job in list_jobs(project, limit=200):
        if job.active and job.kind in RESUMABLE and job.name == name and job.id != other_than:
            raise BadInputError(
                f"name {name!r}", f"job {job.id} is training into it; stop it or choose another"
            )


def _new_run(project: Project, options: dict[str, Any]) -> None:
    """A training that neither resumes nor replaces must get a name no run has (runs never replace
    each other silently)."""
    name = options["name"]
    if not options.get("resume") and not options.get("replace") and run_exists(project, name):
        raise BadInputError(
            f"run name {name!r}",
            f"is an existing run (checkpoints/{name}/); choose a new name such as "
            f"{next_run_name(project, name, training_names(project))}, or replace it",
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
    if kind in RESUMABLE:
        _busy(project, clean["name"])
        _new_run(project, clean)
        if clean.get("resume"):
            _checkpoint_exists(project, clean["name"])
    if kind == "pipeline":
        _no_other_pipeline(project)
        for step in clean["steps"]:
            if step["kind"] in RESUMABLE:
                _busy(project, step["options"]["name"])
                _new_run(project, step["options"])
    job_id = create_job(project, kind, clean)
    _launch(project, job_id, kind, clean)
    return job_id


def start_pipeline(project: Project, steps: list[dict[str, Any]]) -> int:
    """A ``pipeline`` job running ``steps`` ([{"kind", "options"}, ...]) one after another; its id."""
    return start_job(project, "pipeline", {"steps": steps})


def _no_other_pipeline(project: Project) -> None:
    for job in list_jobs(project, limit=200):
        if job.active and job.kind == "pipeline":
            raise BadInputError("pipeline", f"job {job.id} is running the pipeline; stop it or wait for it")


def pipeline_child(job: JobRecord) -> int | None:
    """The step job a pipeline job started last (None before its first, or for another kind)."""
    return job.metrics.get("current_job") if job.kind == "pipeline" else None


def _checkpoint_exists(project: Project, name: str) -> None:
    if not (project.root / "checkpoints" / name / CHECKPOINT).is_file():
        raise BadInputError(f"checkpoints/{name}", "has no checkpoint to resume from; start afresh")


def stop_job(project: Project, job_id: int, wait: float = 10.0) -> None:
    """SIGTERM to the job's process group, SIGKILL after ``wait`` seconds; the row ends ``stopped``.

    The child records ``stopped`` itself; when it could not (killed before it set up, or too slow)
    this does. The checkpoint of the last finished epoch stays for ``resume_job``. A pipeline job
    stops the step it runs (and that step is stopped here too when the pipeline could not)."""
    job = get_job(project, job_id)
    if not job.active:
        raise BadInputError(f"job {job_id}", f"is not running ({job.status})")
    if job.kind == "pipeline":
        wait = max(wait, 25.0)  # its driver first stops its step
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
    child = pipeline_child(get_job(project, job_id, check=False))
    if child is not None and get_job(project, child).active:
        stop_job(project, child, wait)


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)  # the job leads its own session: pgid == pid


def can_resume(job: JobRecord) -> bool:
    """Whether ``resume_job`` takes this job: a stopped or failed training, or per-image step that
    began its run."""
    if job.status not in ("stopped", "failed"):
        return False
    return job.kind in RESUMABLE or job.kind in PER_IMAGE and job.run_id is not None


def resume_job(project: Project, job_id: int) -> None:
    """Start a stopped or failed job again, same row: a training with ``--resume`` (from its last
    checkpoint), a per-image step with ``--resume RUN`` (its run, the images it committed kept)."""
    job = get_job(project, job_id)
    if job.kind not in RESUMABLE and job.kind not in PER_IMAGE:
        raise BadInputError(
            f"job {job_id}",
            f"only a training or a per-image step resumes; run the {TITLES.get(job.kind, job.kind)} step again",
        )
    if job.status not in ("stopped", "failed"):
        raise BadInputError(
            f"job {job_id}", f"only a stopped or failed job resumes, this one is {job.status}"
        )
    if job.kind in PER_IMAGE:
        if job.run_id is None:
            raise BadInputError(f"job {job_id}", "stopped before its run began: run the step again")
        options = validate(project, job.kind, {**job.args, "resume": job.run_id})
        set_status(project, job_id, "queued", args=options, pid=None, message="resuming")
        _launch(project, job_id, job.kind, options)
        return
    args = {k: v for k, v in job.args.items() if k != "replace"}  # it continues what it started
    options = validate(project, job.kind, {**args, "resume": True})
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
