"""The demo project: the synthetic ``shapes`` dataset imported into a project folder."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.resources
import io
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from wsseg.data.shapes import SHAPE_CLASSES, ShapesConfig, write_shapes_dataset
from wsseg.errors import BadInputError
from wsseg.fileio import write_bytes
from wsseg.stages.make_peaks import make_peaks
from wsseg.stages.make_proposals import STAGE as PROPOSALS_STAGE
from wsseg.stages.make_proposals import make_proposals
from wsseg.stages.make_pseudo_masks import STAGE as PSEUDO_STAGE
from wsseg.stages.make_pseudo_masks import make_pseudo_masks
from wsseg.stages.pool import default_workers
from wsseg.stages.recipes import classifier_config, classifier_schedule, plan_for
from wsseg.stages.train_classifier import train_classifier
from wsseg.store.importer import import_source
from wsseg.store.project import Project
from wsseg.training.engine import CHECKPOINT, Progress, load_checkpoint, tqdm_callback


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


def make_demo_checkpoint(
    out: Path, work: Path, images: int | None = None, epochs: int | None = None, seed: int = 1
) -> dict:
    """Train the demo classifier with the full shapes benchmark's recipe and save it to ``out``.

    ``images`` fresh shapes images (generator seed ``seed``, not the demo's 0; default: the recipe's
    training images) are imported into a project under ``work``; the classifier of
    ``wsseg.stages.recipes.plan_for("shapes")`` trains on them (``epochs``: default the recipe's); its
    checkpoint is saved without the optimiser state (about 1 MB). Returns the training metrics.
    """
    plan = plan_for("shapes", False, len(SHAPE_CLASSES), seed)
    project = create_demo_project(work, n_images=images or plan.train_images, seed=seed)
    metrics = train_classifier(
        project,
        plan.classifier,
        dataclasses.replace(plan.train, epochs=epochs or plan.train.epochs),
        augment=plan.augment,
        callback=tqdm_callback("demo checkpoint"),
    )
    save_slim(project.root / "checkpoints" / "classifier" / CHECKPOINT, Path(out))
    return metrics


def save_slim(checkpoint: Path, out: Path) -> int:
    """Copy a training checkpoint to ``out`` without its optimiser state; return the bytes written."""
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
    if install_classifier(project, checkpoint) is None:
        return None
    return _demo_peaks(project, progress)


#: A stage's progress bar: given a title, a context giving the ``progress(done, total)`` callback.
ProgressBar = Callable[[str], contextlib.AbstractContextManager[Callable[[int, int], None] | None]]


@contextlib.contextmanager
def _no_bar(desc: str) -> Iterator[None]:
    yield None


def build_demo(
    project: Project,
    checkpoint: Path = DEMO_CHECKPOINT,
    bar: ProgressBar = _no_bar,
    workers: int | None = None,
) -> dict[str, int]:
    """Make the demo ready to explore and curate: the shipped classifier, its peaks, the proposals and
    the pseudo masks of every image, each made only when the project lacks it (so a second call costs
    nothing). Returns the id of each run made now, by stage; nothing when no classifier is shipped and
    the project has none."""
    made: dict[str, int] = {}
    with bar("demo peaks") as progress:
        peaks = install_demo_checkpoint(project, checkpoint, progress)
    if peaks is not None:
        made["peaks"] = peaks
    if project.latest_run("peaks", status="done") is None:
        return made
    workers = workers or default_workers()
    if project.latest_run(PROPOSALS_STAGE, status="done") is None:
        with bar("demo proposals") as progress:
            made[PROPOSALS_STAGE] = make_proposals(project, workers=workers, progress=progress)
    if project.latest_run(PSEUDO_STAGE, status="done") is None:
        with bar("demo pseudo masks") as progress:
            made[PSEUDO_STAGE] = make_pseudo_masks(project, workers=workers, progress=progress)
    return made


def install_classifier(project: Project, checkpoint: Path = DEMO_CHECKPOINT) -> int | None:
    """Copy ``checkpoint`` (default: the shipped demo classifier) as the project's classifier
    ``checkpoints/classifier`` and record a done ``classifier`` run whose config names its source; the
    run id, or None when ``checkpoint`` is no file or the project already has a classifier."""
    target = project.root / "checkpoints" / "classifier" / CHECKPOINT
    if not Path(checkpoint).is_file() or target.exists():
        return None
    write_bytes(target, Path(checkpoint).read_bytes())
    run_id = project.start_run(
        "classifier", {"name": "classifier", "source": str(checkpoint)}, artifacts="checkpoints/classifier"
    )
    project.finish_run(run_id, "done", {"installed_from": Path(checkpoint).name})
    return run_id


def _demo_peaks(project: Project, progress: Callable[[int, int], None] | None = None) -> int:
    """The inference peaks of the recipe (``make_peaks``'s defaults) on every image of the project."""
    return make_peaks(project, progress=progress)


def train_demo_classifier(
    project: Project, epochs: int = 10, callback: Callable[[Progress], bool | None] | None = None
) -> int:
    """Train the small from-scratch CNN on the demo images and compute their peaks; return the peaks run.

    The benchmark's classifier recipe (small backbone, global average pooling, peaks found at
    inference) on every image of the project, for ``epochs`` epochs: about a minute for the 200 demo
    images at 10 epochs on 2 CPU cores. That is enough to fill the CAMs and peaks page, not to give
    good maps: measured on 100 held-out shapes, 10 epochs on 200 images reach a tag mAP of 0.54 and 30
    epochs 0.61 (the benchmark's 1,000 images x 15 epochs reach about 0.93; docs/benchmark.md).
    The peaks run uses the inference peaks of ``wsseg.stages.recipes``.
    """
    config = classifier_config(len(project.classes()))
    train_classifier(project, config, classifier_schedule(epochs), callback=callback)
    return _demo_peaks(project)
