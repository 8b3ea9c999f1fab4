"""Per-image work over a pool of processes, results in input order (proposals, pseudo masks)."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def default_workers() -> int:
    """One process per core this process may use, at most 4 (2 on a 2-core machine)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)


def map_in_order(fn: Callable[[Any], T], tasks: Sequence[Any], workers: int) -> Iterator[T]:
    """``fn(task)`` for every task, yielded in order; ``workers`` <= 1 runs them in this process.

    Workers start from a fork server, not by forking this process: a fork copies the locks of every
    thread alive here (torch's and OpenCV's pools, a Streamlit server) and the child can wait on one
    forever; the full test suite hung that way. As with spawn, a script that uses the pool needs an
    ``if __name__ == "__main__":`` guard (``python -m wsseg`` has one). Workers run OpenCV on one
    thread (a task that uses torch sets its own thread count). ``fn`` must be a module-level function and the tasks picklable.
    """
    if workers <= 1 or len(tasks) <= 1:
        yield from map(fn, tasks)
        return
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    with ProcessPoolExecutor(min(workers, len(tasks)), mp_context=context, initializer=_init_worker) as pool:
        yield from pool.map(fn, tasks, chunksize=max(1, min(8, len(tasks) // (4 * workers))))
