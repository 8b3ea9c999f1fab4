"""A terminal progress bar for the per-image stages (peaks, proposals, pseudo masks)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def image_bar(desc: str) -> Iterator[Callable[[int, int], None]]:
    """A tqdm bar counting images, as a stage's ``progress(done, total)`` callback; closed on exit,
    whether the stage finished or raised. (Training steps have ``wsseg.training.engine.tqdm_callback``.)"""
    from tqdm import tqdm

    bar = tqdm(desc=desc, unit="image")

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        yield update
    finally:
        bar.close()
