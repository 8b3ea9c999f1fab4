"""The job's side of a background job (``wsseg <command> --job ID``).

``run_as_job`` marks the row running, turns SIGTERM into ``JobStopped`` (a ``KeyboardInterrupt``, so
the stages record their run as stopped and the atomic checkpoint of the last epoch stays), and
records how the work ended: done (its last progress message kept), stopped, or failed with the
error's message. ``JobReporter`` is the training engine's progress callback: it keeps the loss curve
and writes progress, a one-line message and the curve into the row at most every ``interval``
seconds, and at the end of every epoch. ``ImageReporter`` is a per-image stage's ``progress(done,
total)``: images done, their total and the time left, written at most every ``interval`` seconds and
after the last image.
"""

from __future__ import annotations

import os
import signal
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from wsseg.errors import WssegError
from wsseg.jobs.table import get_job, report, set_status
from wsseg.store.project import Project
from wsseg.training.engine import Progress

MAX_POINTS = 2000  # the stored curve is thinned by half whenever it grows past this
#: The job kinds that train, checkpointing every epoch: the ones a stopped job can resume.
RESUMABLE = ("classifier", "maskrcnn", "ple")
#: The runs a job kind's per-image work records (the estimator's: the label maps of ``--predict``).
RUN_STAGES = {
    "peaks": ("peaks",),
    "proposals": ("proposals",),
    "pseudo_masks": ("pseudo_masks",),
    "evaluate": ("evaluate", "ple_predict"),
    "ple": ("ple_predict",),
}


class JobStopped(KeyboardInterrupt):
    """SIGTERM arrived: the job was asked to stop."""


def _stop(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one stop is enough; the recording must finish
    raise JobStopped()


def run_as_job(project_root: str | Path, job_id: int, work: Callable[[], None]) -> None:
    """Run ``work`` as job ``job_id`` of the project, recording its end in the row; re-raises."""
    project = Project(project_root)
    if not set_status(project, job_id, "running", expected=("queued",), pid=os.getpid()):
        job = get_job(project, job_id, check=False)
        if job.status != "running":  # stopped before it could start
            raise WssegError(f"job {job_id} is {job.status}; not starting")
    signal.signal(signal.SIGTERM, _stop)
    try:
        work()
    except JobStopped:
        job = get_job(project, job_id, check=False)
        message = f"stopped at {job.progress:.0%}" + (
            "; resume continues from the last finished epoch" if job.kind in RESUMABLE else ""
        )
        set_status(project, job_id, "stopped", expected=("running",), message=message)
        raise
    except WssegError as error:
        set_status(project, job_id, "failed", expected=("running",), message=str(error))
        raise
    except BaseException as error:
        traceback.print_exc()  # into the job's log
        set_status(
            project, job_id, "failed", expected=("running",), message=f"{type(error).__name__}: {error}"
        )
        raise
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    last = get_job(project, job_id, check=False).message
    message = "done" if last in ("", "starting", "resuming") else f"done · {last}"
    set_status(project, job_id, "done", expected=("running",), progress=1.0, message=message)


class JobReporter:
    """Progress callback of ``wsseg.training.engine.train`` that writes into job ``job_id``'s row.

    ``metrics`` of the row: ``curve`` [[global step, total loss], ...] (global step = epoch x steps +
    step, counted from 1), ``epochs`` [{"epoch": e (from 1), name: mean loss, ...}], ``steps`` (per
    epoch). A resumed job keeps the curve of the epochs its checkpoint holds and redoes the rest.
    """

    def __init__(self, project: Project, job_id: int, stage: str, interval: float = 0.5) -> None:
        self.project, self.job_id, self.stage, self.interval = project, job_id, stage, interval
        self.metrics: dict[str, Any] = dict(get_job(project, job_id, check=False).metrics)
        self.last_write = 0.0
        self.run_id: int | None = None
        self.started = False

    def _start(self, progress: Progress) -> None:
        """First call: drop what the resumed epochs redo; find the run the stage just started."""
        first = progress.epoch * progress.steps
        self.metrics["curve"] = [p for p in self.metrics.get("curve", []) if p[0] <= first]
        self.metrics["epochs"] = [e for e in self.metrics.get("epochs", []) if e["epoch"] <= progress.epoch]
        self.metrics["steps"] = progress.steps
        name = get_job(self.project, self.job_id, check=False).name
        runs = [
            r for r in self.project.runs(self.stage) if r.config.get("name") == name and r.status == "running"
        ]
        self.run_id = runs[0].id if runs else None
        self.started = True

    def __call__(self, progress: Progress) -> None:
        if not self.started:
            self._start(progress)
        total = sum(progress.losses.values())
        if progress.epoch_done:
            self.metrics["epochs"].append({"epoch": progress.epoch + 1, **progress.losses})
        else:
            self.metrics["curve"].append([progress.epoch * progress.steps + progress.step, total])
            if len(self.metrics["curve"]) > MAX_POINTS:
                self.metrics["curve"] = self.metrics["curve"][::2]
        now = time.monotonic()
        if progress.epoch_done or now - self.last_write >= self.interval:
            self.last_write = now
            message = (
                f"epoch {progress.epoch + 1}/{progress.epochs} · step {progress.step}/{progress.steps} · "
                f"loss {total:.4f}"
            )
            report(self.project, self.job_id, progress.fraction, message, self.metrics, self.run_id)


def job_progress(args: Any, stage: str, desc: str) -> Callable[[Progress], None]:
    """The training stages' progress callback for job ``args.job``: its row in the jobs table."""
    return JobReporter(Project(args.project), args.job, stage)


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


class ImageReporter:
    """A per-image stage's ``progress(done, total)`` that writes into job ``job_id``'s row: progress
    done/total, a message "<desc>: done/total images · about T left" (T from the mean time per image
    so far), ``images_done`` and ``images`` added to its ``metrics`` (a training's loss curve, before
    the estimator's label maps, stays) and, when the row has no run yet, the run the stage opened (its
    kind's newest run since the job began). Written at most every ``interval`` seconds, and always
    after the last image."""

    def __init__(self, project: Project, job_id: int, desc: str, interval: float = 0.5) -> None:
        self.project, self.job_id, self.desc, self.interval = project, job_id, desc, interval
        self.started = time.monotonic()
        self.last_write = 0.0
        self.run_id: int | None = None
        self.metrics: dict[str, Any] | None = None

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self.last_write < self.interval:
            return
        self.last_write = now
        if self.metrics is None:
            job = get_job(self.project, self.job_id, check=False)
            self.metrics = dict(job.metrics)
            stages = RUN_STAGES.get(job.kind, ())
            mine = [r for r in self.project.runs() if r.stage in stages and r.started_at >= job.created_at]
            self.run_id = mine[0].id if mine and job.run_id is None else None
        elapsed = now - self.started
        if done >= total:
            timing = f"took {_duration(elapsed)}"
        else:
            timing = f"about {_duration(elapsed / max(done, 1) * (total - done))} left" if done else "…"
        message = f"{self.desc}: {done}/{total} images · {timing}"
        self.metrics.update(images_done=done, images=total)
        report(self.project, self.job_id, done / max(total, 1), message, self.metrics, self.run_id)


@contextmanager
def job_image_progress(args: Any, desc: str) -> Iterator[Callable[[int, int], None]]:
    """A per-image stage's progress callback for job ``args.job`` (its row in the jobs table)."""
    yield ImageReporter(Project(args.project), args.job, desc)
