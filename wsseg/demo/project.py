"""The demo project: the synthetic ``shapes`` dataset imported into a project folder."""

from __future__ import annotations

import importlib.resources
import shutil
from collections.abc import Callable
from pathlib import Path

from wsseg.data.shapes import ShapesConfig, write_shapes_dataset
from wsseg.errors import BadInputError
from wsseg.store.importer import import_source
from wsseg.store.project import Project
from wsseg.training.engine import Progress


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


#: The shipped demo classifier (``python -m wsseg demo-checkpoint`` makes it; see ``make_demo_checkpoint``),
#: read from the package ``wsseg.assets``: the repository's ``assets/``, installed as package data.
DEMO_CHECKPOINT = Path(str(importlib.resources.files("wsseg.assets"))) / "demo-classifier.pt"


def make_demo_checkpoint(out: Path, work: Path, images: int = 3000, epochs: int = 46, seed: int = 1) -> dict:
    """Train the demo classifier with the full shapes benchmark's recipe and save it to ``out``.

    ``images`` fresh shapes images (generator seed ``seed``, not the demo's 0) are imported into a
    project under ``work``; the classifier of ``wsseg.bench.command.plan_for("shapes")`` trains on them; its
    checkpoint is saved without the optimiser state (about 1 MB). Returns the training metrics.
    """
    import dataclasses

    from wsseg.bench.command import plan_for
    from wsseg.stages.train_classifier import train_classifier
    from wsseg.training.engine import CHECKPOINT, tqdm_callback

    project = create_demo_project(work, n_images=images, seed=seed)
    plan = plan_for("shapes", False, len(project.classes()), seed)
    metrics = train_classifier(
        project,
        plan.classifier,
        dataclasses.replace(plan.train, epochs=epochs),
        augment=plan.augment,
        callback=tqdm_callback("demo checkpoint"),
    )
    save_slim(project.root / "checkpoints" / "classifier" / CHECKPOINT, Path(out))
    return metrics


def save_slim(checkpoint: Path, out: Path) -> int:
    """Copy a training checkpoint to ``out`` without its optimiser state; return the bytes written."""
    import io

    import torch

    from wsseg.fileio import write_bytes
    from wsseg.training.engine import load_checkpoint

    state = load_checkpoint(checkpoint)
    buffer = io.BytesIO()
    torch.save({"model": state["model"], "extra": state["extra"], "epoch": state.get("epoch")}, buffer)
    write_bytes(Path(out), buffer.getvalue())
    return len(buffer.getvalue())


def install_demo_checkpoint(
    project: Project,
    checkpoint: Path = DEMO_CHECKPOINT,
    progress: Callable[[int, int], None] | None = None,
) -> int | None:
    """Give the demo project the shipped classifier and compute its peaks; the peaks run id, or None
    when no checkpoint is shipped or the project already has a classifier."""
    from wsseg.fileio import write_bytes
    from wsseg.training.engine import CHECKPOINT

    target = project.root / "checkpoints" / "classifier" / CHECKPOINT
    if not Path(checkpoint).is_file() or target.exists():
        return None
    write_bytes(target, Path(checkpoint).read_bytes())
    run_id = project.start_run(
        "classifier", {"name": "classifier", "source": str(checkpoint)}, artifacts="checkpoints/classifier"
    )
    project.finish_run(run_id, "done", {"installed_from": Path(checkpoint).name})
    return _demo_peaks(project, progress)


def _demo_peaks(project: Project, progress: Callable[[int, int], None] | None = None) -> int:
    from wsseg.methods.prm import PRMConfig
    from wsseg.stages.evaluate_classifier import INFERENCE_PEAKS
    from wsseg.stages.make_peaks import make_peaks

    cfg = PRMConfig(
        peak_threshold=INFERENCE_PEAKS.peak_threshold,
        relative_threshold=INFERENCE_PEAKS.relative_threshold,
        smooth=INFERENCE_PEAKS.smooth,
    )
    return make_peaks(project, prm_config=cfg, progress=progress)


def train_demo_classifier(
    project: Project, epochs: int = 10, callback: Callable[[Progress], bool | None] | None = None
) -> int:
    """Train the small from-scratch CNN on the demo images and compute their peaks; return the peaks run.

    The benchmark's classifier recipe (small backbone, global average pooling, peaks found at
    inference) on every image of the project, for ``epochs`` epochs: about a minute for the 200 demo
    images at 10 epochs on 2 CPU cores. That is enough to fill the CAMs and peaks page, not to give
    good maps: measured on 100 held-out shapes, 10 epochs on 200 images reach a tag mAP of 0.54 and 30
    epochs 0.61 (the benchmark's 1,000 images x 15 epochs reach about 0.93; docs/benchmark.md).
    The peaks run uses the inference peaks of ``wsseg.stages.evaluate_classifier``.
    """
    from wsseg.models.classifier import ClassifierConfig
    from wsseg.stages.train_classifier import train_classifier
    from wsseg.training.engine import TrainConfig

    config = ClassifierConfig(num_classes=len(project.classes()), backbone="small", peak_stimulation=False)
    train_classifier(project, config, TrainConfig(epochs=epochs, batch_size=32, lr=3e-3), callback=callback)
    return _demo_peaks(project)
