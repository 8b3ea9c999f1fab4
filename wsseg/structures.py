"""Typed containers for per-image results, shared by every layer: ``Instances`` and label maps."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Instances:
    """The instances of one image.

    masks: NxHxW bool; labels: N int class indices (0-based); scores: N float (1.0 for ground truth);
    crowd: N bool or None (none is a crowd). A crowd region (COCO's ``iscrowd``) is ground truth that
    covers a group of objects: evaluation neither rewards nor punishes a prediction inside it.
    """

    masks: np.ndarray
    labels: np.ndarray
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    crowd: np.ndarray | None = None

    @property
    def is_crowd(self) -> np.ndarray:
        """N bool: which instances are crowd regions."""
        if self.crowd is None:
            return np.zeros(len(self.labels), bool)
        return np.asarray(self.crowd, bool)

    @staticmethod
    def empty(height: int, width: int) -> Instances:
        return Instances(np.zeros((0, height, width), bool), np.zeros(0, np.int64), np.zeros(0))

    def __len__(self) -> int:
        return len(self.labels)


def label_map(instances: Instances, shape: tuple[int, int], dtype: type = np.int64) -> np.ndarray:
    """HxW ``dtype``: class c + 1 where an instance of class c lies, 0 elsewhere (the estimator's labels,
    background first). Where instances overlap, the higher-scoring one is on top; between equal scores,
    the later one."""
    out = np.zeros(shape, dtype)
    for k in np.argsort(np.asarray(instances.scores, np.float64), kind="stable"):
        out[instances.masks[k]] = int(instances.labels[k]) + 1
    return out
