"""What a per-image task is, wherever it runs (the local pool, a Ray cluster): its result or a
``Failed`` in its place, its numerical libraries on one thread, and how often it may be tried."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

#: How many times a task runs before a worker's death counts against it (its first run included).
TASK_TRIES = 2


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


class Guarded:
    """``fn`` with the errors of ``catch`` turned into ``Failed`` results (picklable when ``fn`` is)."""

    def __init__(self, fn: Callable[[Any], T], catch: tuple[type[BaseException], ...]) -> None:
        self.fn, self.catch = fn, catch

    def __call__(self, task: Any) -> T | Failed:
        try:
            return self.fn(task)
        except self.catch as error:
            return Failed.of(error)


def one_thread() -> None:
    """Run this process's numerical libraries on one thread each (OpenCV, torch, and the BLAS and
    OpenMP pools that numpy, scipy and scikit-image use): a worker is one of as many processes as
    there are cores, and two threads each on a 2-core machine ran the proposals stage 1.6 times slower
    than one. torch is not imported for it (4 CPU s a worker, where the proposals never use it): one
    imported later reads ``OMP_NUM_THREADS``."""
    # imported here, not at the top: the command line imports this module to build its --help
    import cv2
    from threadpoolctl import threadpool_limits

    os.environ["OMP_NUM_THREADS"] = "1"
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    cv2.setNumThreads(1)
    threadpool_limits(1)
