"""Per-image work over a pool of processes or a Ray cluster, results in input order (proposals,
pseudo masks, the estimator's label maps).

A task whose work raises one of the errors the caller names (``catch``) comes back as a ``Failed``
result in its place; the pool and the other tasks go on. A worker process that dies (killed, or out of
memory) is replaced and its tasks run again; a task that kills its worker twice comes back as
``Failed("WorkerDied", ...)``. With a cluster address (``cluster``, or the environment variable
``WSSEG_CLUSTER``) the same work runs on Ray (``wsseg.stages.cluster``) and its results still come
back here, in order: the caller stays the one writer of the project's database.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from wsseg.stages.cluster import connect, map_on_cluster
from wsseg.stages.tasks import TASK_TRIES, Failed, Guarded, one_thread

T = TypeVar("T")

#: The environment variable that names a Ray cluster when a command is given no ``--cluster``.
CLUSTER_ENV = "WSSEG_CLUSTER"


def default_workers() -> int:
    """One process per core this process may use, at most 4 (2 on a 2-core machine)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


def check_cluster(cluster: str | None) -> None:
    """Join the cluster a stage will use (``cluster``, else ``WSSEG_CLUSTER``; none: nothing to do)
    before it opens its run, so a cluster that does not answer is named before anything is stored."""
    cluster = cluster or os.environ.get(CLUSTER_ENV) or None
    if cluster:
        connect(cluster)


def map_in_order(
    fn: Callable[[Any], T],
    tasks: Sequence[Any],
    workers: int,
    catch: tuple[type[BaseException], ...] = (),
    cluster: str | None = None,
) -> Iterator[T | Failed]:
    """``fn(task)`` for every task, yielded in order; ``workers`` <= 1 runs them in this process.

    A task whose ``fn`` raises one of ``catch`` (in a worker or here) yields ``Failed`` (the error's kind
    and message) and the rest go on; any other error ends the iteration, raised here as itself.

    ``cluster`` (default: the ``WSSEG_CLUSTER`` environment variable) is a Ray cluster's address; then
    the tasks run there (``wsseg.stages.cluster.map_on_cluster``) and ``workers`` is not used. Without
    one, the tasks run in ``workers`` local processes (``local_pool``). ``fn`` must be a module-level
    function and the tasks picklable.
    """
    run = Guarded(fn, catch) if catch else fn
    cluster = cluster or os.environ.get(CLUSTER_ENV) or None
    if cluster:
        yield from map_on_cluster(run, tasks, cluster)
    elif workers <= 1 or len(tasks) <= 1:
        yield from map(run, tasks)
    else:
        yield from local_pool(run, tasks, workers)


def _context() -> multiprocessing.context.BaseContext:
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def local_pool(run: Callable[[Any], T], tasks: Sequence[Any], workers: int) -> Iterator[T | Failed]:
    """``run(task)`` for every task in ``workers`` local processes, yielded in order.

    At most two tasks per worker are in flight, so a long run holds few results. When a worker dies
    the pool is broken and which task killed it is not known: each task then in flight runs again in
    a process of its own (``TASK_TRIES`` times at most, else it yields ``Failed("WorkerDied", ...)``)
    and a new pool takes the rest.

    Workers start from a fork server, not by forking this process: a fork copies the locks of every
    thread alive here (torch's and OpenCV's pools, a Streamlit server) and the child can wait on one
    forever; the full test suite hung that way. As with spawn, a script that uses the pool needs an
    ``if __name__ == "__main__":`` guard (``python -m wsseg`` has one). Workers run their numerical
    libraries on one thread (``one_thread``).
    """
    context = _context()
    if context.get_start_method() == "forkserver":
        # The fork server imports the work's module (torch, torchvision: 4 to 7 CPU s on 2 cores) once
        # and each worker forks with it loaded, instead of importing it again. Only the first pool of a
        # process starts the server; the later ones find the heavy modules there already.
        module = getattr(getattr(run, "fn", run), "__module__", None) or "__main__"
        context.set_forkserver_preload(["__main__", module])
    start = 0  # the first task whose result has not been yielded
    while start < len(tasks):
        broken = None  # when the pool breaks: the end of the tasks then in flight (start..broken-1)
        with ProcessPoolExecutor(
            min(workers, len(tasks) - start), mp_context=context, initializer=one_thread
        ) as pool:
            flight: deque[tuple[int, Future]] = deque()
            submitted = start
            try:
                while start < len(tasks):
                    while submitted < len(tasks) and len(flight) < 2 * workers:
                        flight.append((submitted, pool.submit(run, tasks[submitted])))
                        submitted += 1
                    index, future = flight[0]
                    result = future.result()
                    flight.popleft()
                    start = index + 1
                    yield result
            except BrokenProcessPool:
                broken = submitted
        if broken is not None:  # which task killed its worker is not known: each runs again alone
            for index in range(start, broken):
                yield _alone(run, tasks[index], context)
            start = broken


def _alone(run: Callable[[Any], T], task: Any, context: multiprocessing.context.BaseContext) -> T | Failed:
    """``run(task)`` in a worker process of its own, up to ``TASK_TRIES`` times while the worker dies."""
    for _ in range(TASK_TRIES):
        with ProcessPoolExecutor(1, mp_context=context, initializer=one_thread) as pool:
            try:
                return pool.submit(run, task).result()
            except BrokenProcessPool:
                continue
    return Failed("WorkerDied", f"its worker process died {TASK_TRIES} times while working on it alone")
