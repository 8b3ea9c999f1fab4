"""What every per-image stage shares: open its run, work through its images with progress, finish the run.

A per-image stage (peaks, proposals, pseudo masks, the estimator's label maps) keeps only its work on
one image: ``work(task)`` computes (in a worker process when ``workers`` > 1, so it must then be a
module-level function of picklable tasks) and ``store(task, result)`` writes the database in this
process. ``run_per_image`` does the rest, the same way for every stage.

An image the work cannot handle (its work raises a ``WssegError``, such as a ``BadInputError`` naming
what is wrong, or a ``MemoryError``) never ends the run: it is skipped, named with its reason in the
run's metrics (``metrics["skipped"]``), and the other images go on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from wsseg.errors import BadInputError, WssegError
from wsseg.fileio import write_json
from wsseg.stages.common import ended
from wsseg.stages.pool import Failed, check_cluster, map_in_order
from wsseg.store.project import Project, RunRecord

T = TypeVar("T")
R = TypeVar("R")

#: ``progress(done, total)``: called after each image with the images done so far and their total.
ImageProgress = Callable[[int, int], None]

#: The errors of one image's work that skip that image instead of ending the run.
SKIPPED_ERRORS: tuple[type[BaseException], ...] = (WssegError, MemoryError)


def open_run(
    project: Project,
    stage: str,
    config: dict[str, Any],
    run_id: int | None = None,
    cluster: str | None = None,
) -> int:
    """The run a stage's images go to: a new ``running`` run of ``stage`` with ``config``, or the run
    ``run_id`` (``--run``: the shards of several calls joined into one run; ``--resume``), which must be
    a ``stage`` run of this project and is marked ``running`` again. ``config`` is also written as
    ``config.json`` in the run's artifacts folder. The cluster the run will use (``cluster``, else
    ``WSSEG_CLUSTER``) is joined first: one that does not answer is refused before anything is stored."""
    check_cluster(cluster)
    if run_id is None:
        run_id = project.start_run(stage, config)
    else:
        stage_run(project, stage, run_id, f"--run {run_id}")
        project.reopen_run(run_id)
    write_json(project.artifacts(stage, run_id) / "config.json", config)
    return run_id


def stage_run(project: Project, stage: str, run_id: int, given: str) -> RunRecord:
    """The run ``run_id`` of ``stage``; a BadInputError naming ``given`` (the option) when there is none."""
    found = next((r for r in project.runs(stage) if r.id == run_id), None)
    if found is None:
        raise BadInputError(given, f"is not a {stage} run of this project")
    return found


def resumed_config(project: Project, stage: str, run_id: int) -> dict[str, Any]:
    """The config of the run ``run_id`` of ``stage`` that ``--resume`` continues (with it, the run goes
    on exactly as it started); a BadInputError when there is no such run or it is already done."""
    run = stage_run(project, stage, run_id, f"--resume {run_id}")
    if run.status == "done":
        raise BadInputError(f"--resume {run_id}", "that run is done: nothing to resume")
    return run.config


def task_filename(task: Mapping[str, Any]) -> str:
    """The image file name of a stage's task (a dict with ``filename``): how its skips are named."""
    return task["filename"]


def task_image_id(task: Mapping[str, Any]) -> int:
    """The image id of a stage's task (a dict with ``image_id``): what the run commits."""
    return task["image_id"]


def skipped_images(metrics: Mapping[str, Any]) -> list[dict[str, str]]:
    """The images a run skipped, as ``{"image": file name, "reason": why}`` (none: an empty list)."""
    found = metrics.get("skipped")
    return [s for s in found if isinstance(s, dict)] if isinstance(found, list) else []


def skipped_lines(metrics: Mapping[str, Any]) -> list[str]:
    """One line per skipped image of a run's metrics, ``"<file name>: <reason>"``."""
    return [f"{s.get('image', '?')}: {s.get('reason', '')}" for s in skipped_images(metrics)]


def print_skipped(project: Project, run_id: int) -> None:
    """Print the images the run ``run_id`` skipped, one line each with its reason (nothing when none)."""
    lines = skipped_lines(next((r.metrics for r in project.runs() if r.id == run_id), {}))
    if lines:
        print(f"{len(lines)} image(s) skipped (nothing stored for them):")
        for line in lines:
            print(f"  {line}")


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
    name: Callable[[T], str] = str,
    image_id: Callable[[T], int] | None = None,
    cluster: str | None = None,
) -> dict[str, Any]:
    """Run ``work`` on every task (one per image, in order) and finish the run ``run_id``; return its metrics.

    ``work(task)`` runs in ``workers`` processes, or on the Ray cluster ``cluster``
    (``wsseg.stages.pool.map_in_order``); each result is handed, in task order, to
    ``store(task, result)`` in this process, which returns counts to add up (without ``store``, the
    result itself is those counts). ``progress(k, n)`` follows the k-th of n.

    With ``image_id`` (the task's image), each image is committed with its results in one transaction
    (``Project.commit_image``): the images the run has committed already are not worked on again (a
    run resumed after its driver was killed, ``--resume``), and their counts are added in.

    A task whose work raises one of ``SKIPPED_ERRORS`` is skipped: nothing is stored for it and the
    metrics list it as ``{"image": name(task), "reason": the error's message}`` under ``"skipped"``
    (after those of the run's earlier shards, when ``run_id`` is joined). One whose worker died
    (``WorkerDied``) is skipped too but not committed, so a resumed run tries it again.

    The metrics: ``{"images": n, <count>: its sum, ...}`` (every name in ``counts`` present, 0 when
    nothing added to it), or ``summary`` of them, plus ``"skipped"`` when any image was. The run is
    finished ``done`` with them, unless every image was skipped: then it is finished ``failed`` and a
    BadInputError names the images and their reasons. When anything else raises, the run is finished
    ``failed`` (``stopped`` on Ctrl-C or a job's SIGTERM) with the counts so far, and the error re-raised.
    ``run_id`` None records nothing (a stage asked not to write).
    """
    totals: dict[str, float] = {"images": len(tasks), **dict.fromkeys(counts, 0)}
    earlier = next((r.metrics for r in project.runs() if r.id == run_id), {}) if run_id is not None else {}
    skipped: dict[str, str] = {
        s["image"]: s.get("reason", "") for s in skipped_images(earlier) if "image" in s
    }
    committing = image_id is not None and run_id is not None
    committed = project.committed_images(run_id) if committing else {}
    todo = list(tasks)
    if committed:
        todo = [task for task in tasks if image_id(task) not in committed]
        for task in tasks:
            tally = committed.get(image_id(task))
            if tally is None:
                continue
            if "skipped" in tally:
                skipped[name(task)] = str(tally["skipped"])
            for key, value in tally.items():
                if key != "skipped":
                    totals[key] = totals.get(key, 0) + value
    mine: dict[str, str] = {}

    def with_skipped(metrics: dict[str, Any]) -> dict[str, Any]:
        every = {**skipped, **mine}
        listed = [{"image": image, "reason": reason} for image, reason in every.items()]
        return {**metrics, "skipped": listed} if listed else metrics

    done_before = len(tasks) - len(todo)
    try:
        results = map_in_order(work, todo, workers, catch=SKIPPED_ERRORS, cluster=cluster)
        for k, (task, result) in enumerate(zip(todo, results, strict=True)):
            if isinstance(result, Failed):
                image = name(task)
                reason = result.reason.removeprefix(f"{image}: ")  # named once, in "image"
                mine[image] = reason
                if committing and result.kind != "WorkerDied":
                    project.commit_image(run_id, image_id(task), {"skipped": reason})
            else:
                with project.transaction():
                    tally = store(task, result) if store is not None else result
                    if committing:
                        project.commit_image(run_id, image_id(task), tally)
                for key, value in tally.items():
                    totals[key] = totals.get(key, 0) + value
            if progress is not None:
                progress(done_before + k + 1, len(tasks))
    except BaseException as error:
        if run_id is not None:
            project.finish_run(run_id, ended(error), with_skipped(totals))
        raise
    metrics = with_skipped(summary(totals) if summary is not None else totals)
    failed_here = [task for task in tasks if name(task) in mine or name(task) in skipped]
    if tasks and len(failed_here) == len(tasks):
        if run_id is not None:
            project.finish_run(run_id, "failed", metrics)
        every = {**skipped, **mine}
        shown = "; ".join(f"{image}: {reason}" for image, reason in list(every.items())[:3])
        shown += "; ..." if len(every) > 3 else ""
        raise BadInputError(f"{len(every)} image(s)", f"none could be processed, so the run failed: {shown}")
    if run_id is not None:
        project.finish_run(run_id, "done", metrics)
    return metrics
