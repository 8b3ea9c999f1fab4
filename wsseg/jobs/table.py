"""The project's ``jobs`` table: background training jobs, their state, progress and loss curve.

A job row is written by two processes: the app (or any caller of ``wsseg.jobs.launch``) creates it, and
the job's own process reports its progress into it (``wsseg.jobs.runner``). Every status change is
checked against ``TRANSITIONS`` inside one write transaction, so two writers cannot step over each
other. A row that says ``running`` while its process has gone (killed, crashed before it could say
so) is turned to ``failed`` when it is read.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wsseg.errors import BadInputError
from wsseg.store.project import Project

STATUSES: tuple[str, ...] = ("queued", "running", "done", "failed", "stopped")
ACTIVE: tuple[str, ...] = ("queued", "running")
# Which status may follow which: a stopped or failed job may be queued again (resumed); done is final.
TRANSITIONS: dict[str, frozenset[str]] = {
    "queued": frozenset({"running", "failed", "stopped"}),
    "running": frozenset({"done", "failed", "stopped"}),
    "done": frozenset(),
    "failed": frozenset({"queued"}),
    "stopped": frozenset({"queued"}),
}
VANISHED = "the job's process ended without reporting (killed or crashed); see its log"


@dataclass(frozen=True)
class JobRecord:
    """One job. ``kind``: classifier, maskrcnn or ple; ``args``: its validated options; ``progress``
    in [0, 1]; ``metrics``: ``curve`` ([global step, total loss] pairs), ``epochs`` (per-epoch mean
    losses by name) and ``steps`` (steps per epoch); times are UNIX seconds."""

    id: int
    kind: str
    args: dict[str, Any]
    status: str
    pid: int | None
    progress: float
    message: str
    metrics: dict[str, Any]
    run_id: int | None
    created_at: float
    updated_at: float

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def name(self) -> str:
        """The training run's name (its checkpoint folder under ``checkpoints/``)."""
        return str(self.args.get("name", self.kind))


def _record(row: Any) -> JobRecord:
    return JobRecord(
        id=row["id"],
        kind=row["kind"],
        args=json.loads(row["args"]),
        status=row["status"],
        pid=row["pid"],
        progress=float(row["progress"]),
        message=row["message"],
        metrics=json.loads(row["metrics"]),
        run_id=row["run_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def create_job(project: Project, kind: str, args: dict[str, Any]) -> int:
    """A new ``queued`` job row; returns its id."""
    now = time.time()
    with project.transaction() as conn:
        cur = conn.execute(
            "INSERT INTO jobs (kind, args, status, created_at, updated_at) VALUES (?, ?, 'queued', ?, ?)",
            (kind, json.dumps(args, sort_keys=True), now, now),
        )
        return int(cur.lastrowid)


def set_status(
    project: Project,
    job_id: int,
    status: str,
    *,
    expected: tuple[str, ...] | None = None,
    **fields: Any,
) -> bool:
    """Move job ``job_id`` to ``status`` and set ``fields`` (pid, progress, message, metrics, run_id,
    args) in one transaction. Raises ``BadInputError`` for a move ``TRANSITIONS`` forbids. With
    ``expected``, a row whose current status is not one of those is left alone and False returned
    (a writer that lost a race, e.g. a job that finished while it was being stopped)."""
    if status not in STATUSES:
        raise BadInputError("status", f"expected one of {', '.join(STATUSES)}, got {status!r}")
    allowed = {"pid", "progress", "message", "metrics", "run_id", "args"}
    if set(fields) - allowed:
        raise BadInputError("job fields", f"unknown {sorted(set(fields) - allowed)}")
    with project.transaction() as conn:
        row = conn.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise BadInputError(f"job {job_id}", "no such job in this project")
        current = row["status"]
        if expected is not None and current not in expected:
            return False
        if status not in TRANSITIONS[current]:
            raise BadInputError(f"job {job_id}", f"cannot go from {current} to {status}")
        values = {
            k: json.dumps(v, sort_keys=True) if k in ("metrics", "args") else v for k, v in fields.items()
        }
        assignments = "".join(f", {k} = ?" for k in values)
        conn.execute(
            f"UPDATE jobs SET status = ?, updated_at = ?{assignments} WHERE id = ?",
            (status, time.time(), *values.values(), job_id),
        )
    return True


def report(
    project: Project,
    job_id: int,
    progress: float,
    message: str,
    metrics: dict[str, Any],
    run_id: int | None = None,
) -> bool:
    """Progress of a running job (its status untouched); False when the row no longer says running."""
    with project.transaction() as conn:
        cur = conn.execute(
            "UPDATE jobs SET progress = ?, message = ?, metrics = ?, run_id = COALESCE(?, run_id), "
            "updated_at = ? WHERE id = ? AND status = 'running'",
            (min(max(progress, 0.0), 1.0), message, json.dumps(metrics), run_id, time.time(), job_id),
        )
        return cur.rowcount == 1


def job_process_alive(pid: int | None, job_id: int) -> bool:
    """Whether ``pid`` is still the process of job ``job_id``.

    Reaps it when it is a finished child of this process (else it would linger as a zombie). On
    Linux the process's command line must carry ``--job <job_id>``, so a reused pid is not mistaken
    for the job; elsewhere the pid merely has to exist.
    """
    if pid is None or pid <= 0:
        return False
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    cmdline = Path(f"/proc/{pid}/cmdline")
    if Path("/proc/self/cmdline").exists():
        try:
            words = cmdline.read_bytes().split(b"\0")
        except OSError:
            return False
        return any(
            a == b"--job" and b == str(job_id).encode() for a, b in zip(words, words[1:], strict=False)
        )
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _check_alive(project: Project, job: JobRecord) -> JobRecord:
    """``job`` as it really is: a running (or launched queued) job whose process is gone is failed."""
    launched = job.status == "running" or (job.status == "queued" and job.pid is not None)
    if launched and not job_process_alive(job.pid, job.id):
        # The process is gone, so every write it made has committed: fail the row only if it still
        # says what we read.
        set_status(project, job.id, "failed", expected=(job.status,), message=VANISHED)
        return get_job(project, job.id, check=False)
    return job


def get_job(project: Project, job_id: int, check: bool = True) -> JobRecord:
    """Job ``job_id`` (its process checked when ``check``); ``BadInputError`` when there is none."""
    with project.reading() as conn:
        row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        raise BadInputError(f"job {job_id}", "no such job in this project")
    job = _record(row)
    return _check_alive(project, job) if check else job


def list_jobs(project: Project, limit: int = 50) -> list[JobRecord]:
    """The newest ``limit`` jobs, newest first, each checked for a vanished process."""
    with project.reading() as conn:
        rows = conn.execute("SELECT * FROM jobs ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
    return [_check_alive(project, _record(row)) for row in rows]
