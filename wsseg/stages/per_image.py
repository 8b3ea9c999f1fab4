"""What every per-image stage shares: open its run, work through its images with progress, finish the run.

A per-image stage (peaks, proposals, pseudo masks, the estimator's label maps) keeps only its work on
one image: ``work(task)`` computes (in a worker process when ``workers`` > 1, so it must then be a
module-level function of picklable tasks) and ``store(task, result)`` writes the database in this
process. ``run_per_image`` does the rest, the same way for every stage.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from wsseg.errors import BadInputError
from wsseg.fileio import write_json
from wsseg.stages.common import ended
from wsseg.stages.pool import map_in_order
from wsseg.store.project import Project

T = TypeVar("T")
R = TypeVar("R")

#: ``progress(done, total)``: called after each image with the images done so far and their total.
ImageProgress = Callable[[int, int], None]


def open_run(project: Project, stage: str, config: dict[str, Any], run_id: int | None = None) -> int:
    """The run a stage's images go to: a new ``running`` run of ``stage`` with ``config``, or the run
    ``run_id`` (``--run``: the shards of several calls joined into one run), which must be a ``stage``
    run of this project. ``config`` is also written as ``config.json`` in the run's artifacts folder."""
    if run_id is None:
        run_id = project.start_run(stage, config)
    elif not any(r.id == run_id for r in project.runs(stage)):
        raise BadInputError(f"--run {run_id}", f"is not a {stage} run of this project")
    write_json(project.artifacts(stage, run_id) / "config.json", config)
    return run_id


def run_per_image(
    project: Project,
    run_id: int | None,
    tasks: Sequence[T],
    work: Callable[[T], R],
    store: Callable[[T, R], Mapping[str, float]] | None = None,
    counts: Sequence[str] = (),
    workers: int = 1,
    progress: ImageProgress | None = None,
    summary: Callable[[dict[str, float]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Run ``work`` on every task (one per image, in order) and finish the run ``run_id``; return its metrics.

    ``work(task)`` runs in ``workers`` processes (``wsseg.stages.pool.map_in_order``); each result is
    handed, in task order, to ``store(task, result)`` in this process, which returns counts to add up
    (without ``store``, the result itself is those counts). ``progress(k, n)`` follows the k-th of n.

    The metrics: ``{"images": n, <count>: its sum, ...}`` (every name in ``counts`` present, 0 when
    nothing added to it), or ``summary`` of them. The run is finished ``done`` with them; when anything
    raises, it is finished ``failed`` (``stopped`` on Ctrl-C or a job's SIGTERM) with the counts so far,
    and the error re-raised. ``run_id`` None records nothing (a stage asked not to write).
    """
    totals: dict[str, float] = {"images": len(tasks), **dict.fromkeys(counts, 0)}
    try:
        results = map_in_order(work, tasks, workers)
        for k, (task, result) in enumerate(zip(tasks, results, strict=True)):
            tally = store(task, result) if store is not None else result
            for key, value in tally.items():
                totals[key] = totals.get(key, 0) + value
            if progress is not None:
                progress(k + 1, len(tasks))
    except BaseException as error:
        if run_id is not None:
            project.finish_run(run_id, ended(error), totals)
        raise
    metrics = summary(totals) if summary is not None else totals
    if run_id is not None:
        project.finish_run(run_id, "done", metrics)
    return metrics
