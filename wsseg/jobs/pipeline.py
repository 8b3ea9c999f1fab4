"""The driver of a pipeline job (``wsseg pipeline --job ID``): the steps its row lists, one after another.

The app's "Run every remaining step" starts one ``pipeline`` job (``wsseg.jobs.launch.start_pipeline``)
whose validated args hold the steps ([{"kind", "options"}, ...]). This process starts each step as a
job of its own (``start_job``: its own process, row, log and progress), waits for it, and moves on
when it is done; it stops at the first step that fails or is stopped, and says which. Being a
process of its own, it keeps going when the browser is closed. Stopping it (SIGTERM, ``JobStopped``)
stops the step it is running.

Its row's ``metrics``: ``steps`` [{"kind", "job" (the step's job id, None before it starts),
"status"}], ``current_job`` (the step job it started last); its progress is (steps done + the
running step's progress) / steps.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from typing import Any

from wsseg.errors import WssegError
from wsseg.jobs.launch import TITLES, start_job, stop_job
from wsseg.jobs.runner import JobStopped
from wsseg.jobs.table import get_job, report
from wsseg.store.project import Project

POLL_SECONDS = 1.0


def run_pipeline(project: Project, job_id: int, poll: float = POLL_SECONDS) -> None:
    """Run the steps of pipeline job ``job_id`` (this process is that job); raises ``WssegError``
    naming the step that failed or was stopped."""
    steps: list[dict[str, Any]] = get_job(project, job_id, check=False).args["steps"]
    total = len(steps)
    metrics: dict[str, Any] = {
        "steps": [{"kind": s["kind"], "job": None, "status": "waiting"} for s in steps],
        "current_job": None,
    }
    for k, step in enumerate(steps):
        title = f"step {k + 1}/{total}, {TITLES[step['kind']]}"
        child = start_job(project, step["kind"], step["options"])
        metrics["steps"][k].update(job=child, status="running")
        metrics["current_job"] = child
        try:
            while True:
                record = get_job(project, child)
                message = f"{title} (job {child}): {record.message or '…'}"
                report(
                    project, job_id, (k + (record.progress if record.active else 0)) / total, message, metrics
                )
                if not record.active:
                    break
                time.sleep(poll)
        except JobStopped:
            with contextlib.suppress(WssegError):
                stop_job(project, child)
            metrics["steps"][k]["status"] = "stopped"
            report(project, job_id, k / total, f"stopped at {title}", metrics)
            raise
        metrics["steps"][k]["status"] = record.status
        if record.status != "done":
            report(project, job_id, k / total, f"{title} {record.status}", metrics)
            raise WssegError(f"{title} (job {child}) {record.status}: {record.message}")
    report(project, job_id, 1.0, f"{total} step(s) done", metrics)


def run_from_args(args: argparse.Namespace) -> None:
    run_pipeline(Project(args.project), args.job)
