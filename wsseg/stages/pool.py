"""Per-image work over a pool of processes, results in input order (proposals, pseudo masks).

A task whose work raises one of the errors the caller names (``catch``) comes back as a ``Failed``
result in its place; the pool and the other tasks go on.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Failed:
    """The result of a task whose work raised a caught error: its kind (the exception's class name)
    and its message (``str`` of the error; a bare ``MemoryError`` says "out of memory")."""

    kind: str
    reason: str

    @classmethod
    def of(cls, error: BaseException) -> Failed:
        text = str(error).strip()
        if isinstance(error, MemoryError):
            text = f"out of memory ({text})" if text else "out of memory"
        return cls(type(error).__name__, text or type(error).__name__)


class _Guarded:
    """``fn`` with the errors of ``catch`` turned into ``Failed`` results (picklable when ``fn`` is)."""

    def __init__(self, fn: Callable[[Any], T], catch: tuple[type[BaseException], ...]) -> None:
        self.fn, self.catch = fn, catch

    def __call__(self, task: Any) -> T | Failed:
        try:
            return self.fn(task)
        except self.catch as error:
            return Failed.of(error)


def default_workers() -> int:
    """One process per core this process may use, at most 4 (2 on a 2-core machine)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


def _init_worker() -> None:
    # imported here, not at the top: the command line imports this module to build its --help
    import cv2

    cv2.setNumThreads(1)


def map_in_order(
    fn: Callable[[Any], T],
    tasks: Sequence[Any],
    workers: int,
    catch: tuple[type[BaseException], ...] = (),
) -> Iterator[T | Failed]:
    """``fn(task)`` for every task, yielded in order; ``workers`` <= 1 runs them in this process.

    A task whose ``fn`` raises one of ``catch`` (in a worker or here) yields ``Failed`` (the error's kind
    and message) and the rest go on; any other error ends the iteration, raised here as itself.

    Workers start from a fork server, not by forking this process: a fork copies the locks of every
    thread alive here (torch's and OpenCV's pools, a Streamlit server) and the child can wait on one
    forever; the full test suite hung that way. As with spawn, a script that uses the pool needs an
    ``if __name__ == "__main__":`` guard (``python -m wsseg`` has one). Workers run OpenCV on one
    thread (a task that uses torch sets its own thread count). ``fn`` must be a module-level function and the tasks picklable.
    """
    run = _Guarded(fn, catch) if catch else fn
    if workers <= 1 or len(tasks) <= 1:
        yield from map(run, tasks)
        return
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    if context.get_start_method() == "forkserver":
        # The fork server imports the work's module (torch, torchvision: 4 to 7 CPU s on 2 cores) once
        # and each worker forks with it loaded, instead of importing it again. Only the first pool of a
        # process starts the server; the later ones find the heavy modules there already.
        context.set_forkserver_preload(["__main__", getattr(fn, "__module__", None) or "__main__"])
    with ProcessPoolExecutor(min(workers, len(tasks)), mp_context=context, initializer=_init_worker) as pool:
        yield from pool.map(run, tasks, chunksize=max(1, min(8, len(tasks) // (4 * workers))))
