"""Wall-clock timing for the speed ratios the benchmark reports (measured in one run, one machine)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable


def best_time(fn: Callable[[], object], repeats: int, warmup: bool = True) -> float:
    """Seconds of the fastest of ``repeats`` calls of ``fn`` (after one untimed call if ``warmup``).

    The minimum is the least disturbed by other work on a shared machine.
    """
    if warmup:
        fn()
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def best_times(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """``best_time`` of several functions, their calls interleaved (after one untimed call of each).

    Each round calls every function once, so a burst of load from other processes hits all of them
    alike and the ratios between the minima stay fair on a shared machine.
    """
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(max(1, repeats)):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: min(values) for name, values in times.items()}


class Laps:
    """Wall-clock seconds of consecutive stages, with this process's CPU seconds and the machine's
    1-minute load average at each lap (a shared machine's load explains a slow stage).

    CPU seconds count this process's threads only, not worker processes.
    """

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.load: dict[str, float] = {}
        self._started = time.perf_counter()
        self.start()

    def start(self) -> None:
        """Start timing the next stage (time since the last lap is not counted)."""
        self._mark = (time.perf_counter(), time.process_time())

    def lap(self, name: str) -> None:
        """End stage ``name``, started at the last ``start`` or ``lap``."""
        wall, cpu = time.perf_counter(), time.process_time()
        self.wall[name] = wall - self._mark[0]
        self.cpu[name] = cpu - self._mark[1]
        self.load[name] = os.getloadavg()[0]
        self._mark = (wall, cpu)

    def total(self) -> float:
        return time.perf_counter() - self._started
