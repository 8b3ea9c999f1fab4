"""The demo project: the synthetic ``shapes`` dataset imported into a project folder."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from wsseg.data.shapes import ShapesConfig, write_shapes_dataset
from wsseg.engine import Progress
from wsseg.errors import BadInputError
from wsseg.importer import import_source
from wsseg.store import Project


def create_demo_project(root: str | Path, n_images: int = 200, seed: int = 0) -> Project:
    """Create (or reopen) the demo project at ``root``; images are generated only when it has none."""
    root = Path(root)
    project = Project.create(root, name="demo (shapes)")
    if project.count_images() > 0:
        return project
    if n_images < 1:
        raise BadInputError("images", f"must be at least 1, got {n_images}")
    staging = root / ".demo-staging"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        write_shapes_dataset(staging, n_images, ShapesConfig(seed=seed))
        import_source(project, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return project


def train_demo_classifier(
    project: Project, epochs: int = 10, callback: Callable[[Progress], bool | None] | None = None
) -> int:
    """Train the small from-scratch CNN on the demo images and compute their peaks; return the peaks run.

    The benchmark's classifier recipe (small backbone, global average pooling, peaks found at
    inference) on every image of the project, for ``epochs`` epochs: about a minute for the 200 demo
    images at 10 epochs on 2 CPU cores. That is enough to fill the CAMs and peaks page, not to give
    good maps: measured on 100 held-out shapes, 10 epochs on 200 images reach a tag mAP of 0.54 and 30
    epochs 0.61 (the benchmark's 1,000 images x 15 epochs reach about 0.93; docs/benchmark.md).
    The peaks run uses the inference peaks of ``wsseg.evaluate_classifier``.
    """
    from wsseg.engine import TrainConfig
    from wsseg.evaluate_classifier import INFERENCE_PEAKS
    from wsseg.models.classifier import ClassifierConfig
    from wsseg.prm import PRMConfig
    from wsseg.stages.make_peaks import make_peaks
    from wsseg.stages.train_classifier import train_classifier

    config = ClassifierConfig(num_classes=len(project.classes()), backbone="small", peak_stimulation=False)
    train_classifier(project, config, TrainConfig(epochs=epochs, batch_size=32, lr=3e-3), callback=callback)
    cfg = PRMConfig(
        peak_threshold=INFERENCE_PEAKS.peak_threshold,
        relative_threshold=INFERENCE_PEAKS.relative_threshold,
        smooth=INFERENCE_PEAKS.smooth,
    )
    return make_peaks(project, prm_config=cfg)
