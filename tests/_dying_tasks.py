"""Tasks that kill their own worker process, for the pool tests. A module of its own that imports
nothing heavy: each fresh worker imports it to unpickle the task (the test module would bring torch)."""

from __future__ import annotations

import os
import signal
from pathlib import Path


def die_once(task: tuple[str, int]) -> int:
    """Kills its own worker process the first time it runs for a task (a marker file remembers)."""
    marker, value = task
    if not os.path.exists(marker):
        Path(marker).write_text("died")
        os.kill(os.getpid(), signal.SIGKILL)
    return value * 10


def always_die(value: int) -> int:
    """Kills its worker for a negative value, every time."""
    if value < 0:
        os.kill(os.getpid(), signal.SIGKILL)
    return value * 10
