"""The job's side of a background training job (``wsseg train-* --job ID``).

``run_as_job`` marks the row running, turns SIGTERM into ``JobStopped`` (a ``KeyboardInterrupt``, so
the stages record their run as stopped and the atomic checkpoint of the last epoch stays), and
records how the work ended: done, stopped, or failed with the error's message. ``JobReporter`` is the
training engine's progress callback: it keeps the loss curve and writes progress, a one-line message
and the curve into the row at most every ``interval`` seconds, and at the end of every epoch.
"""

from __future__ import annotations

import os
import signal
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wsseg.errors import WssegError
from wsseg.jobs.table import get_job, report, set_status
from wsseg.store.project import Project
from wsseg.training.engine import Progress

MAX_POINTS = 2000  # the stored curve is thinned by half whenever it grows past this


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
        message = f"stopped at {job.progress:.0%}; resume continues from the last finished epoch"
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
    set_status(project, job_id, "done", expected=("running",), progress=1.0, message="done")


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
