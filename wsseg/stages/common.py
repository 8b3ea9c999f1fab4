"""What every training stage shares: its checkpoint folder and state, and its schedule from the command line."""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import torch

from wsseg.errors import BadInputError
from wsseg.progress import image_bar
from wsseg.store.project import Project
from wsseg.training.device import chosen_device
from wsseg.training.engine import CHECKPOINT, Progress, TrainConfig, load_checkpoint, tqdm_callback

T = TypeVar("T")


def checkpoint_state(
    project_or_folder: Project | Path, name: str, device: str | torch.device = "cpu"
) -> tuple[Path, dict[str, Any]]:
    """(checkpoint file, its state) of the run ``name`` of a project, of a checkpoint folder, or of a
    checkpoint file itself (such as the demo models in ``assets/``)."""
    folder = (
        project_or_folder.root / "checkpoints" / name
        if isinstance(project_or_folder, Project)
        else Path(project_or_folder)
    )
    path = folder if folder.is_file() else folder / CHECKPOINT
    return path, load_checkpoint(path, map_location=device)


def loaded_once(load: Callable[..., T], checkpoint: str) -> T:
    """``load(folder, device=...)`` of the checkpoint folder ``checkpoint`` on this process's device
    (``--device``), loaded once per process and again when the file changed: what a worker of a
    per-image stage calls for every image."""
    path = Path(checkpoint) / CHECKPOINT
    try:
        stamp = path.stat().st_mtime_ns
    except FileNotFoundError:
        raise BadInputError(str(path), "checkpoint not found; train first (or check --name)") from None
    return _loaded(load, checkpoint, stamp, str(chosen_device()))


@functools.lru_cache(maxsize=4)
def _loaded(load: Callable[..., Any], checkpoint: str, stamp: int, device: str) -> Any:
    return load(Path(checkpoint), device=device)


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The schedule options every training command takes (--epochs, --batch-size, --lr, --seed, --workers)."""
    return TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed, workers=args.workers
    )


def training_callback(args: argparse.Namespace, stage: str, desc: str) -> Callable[[Progress], None]:
    """The training engine's progress callback for a stage: the one the caller built
    (``args.make_progress(stage, desc)``, as the command line does for a background job), else a
    terminal bar titled ``desc``."""
    make = getattr(args, "make_progress", None)
    return make(stage, desc) if make is not None else tqdm_callback(desc)


@contextmanager
def image_progress(args: argparse.Namespace, desc: str) -> Iterator[Callable[[int, int], None]]:
    """A per-image stage's ``progress(done, total)`` callback: the one the caller built
    (``args.make_image_progress(desc)``, a context manager, as the command line does for a background
    job), else a terminal bar titled ``desc`` (``wsseg.progress.image_bar``)."""
    make = getattr(args, "make_image_progress", None)
    with make(desc) if make is not None else image_bar(desc) as progress:
        yield progress


def run_exists(project: Project, name: str) -> bool:
    """Whether ``checkpoints/<name>/`` holds a trained model (the run a new one of that name would replace)."""
    return (project.root / "checkpoints" / name / CHECKPOINT).is_file()


def next_run_name(project: Project, base: str, taken: Iterable[str] = ()) -> str:
    """``base`` when no run has that name yet, else the first free ``base-2``, ``base-3``... (a name is
    taken when its ``checkpoints/<name>/`` folder exists, or it is in ``taken``: the names of jobs about
    to train)."""
    taken = set(taken)
    for k in range(1, 10_000):
        name = base if k == 1 else f"{base}-{k}"
        if name not in taken and not (project.root / "checkpoints" / name).exists():
            return name
    raise BadInputError(f"run name {base!r}", "every name up to -9999 is taken; choose another")


def check_new_run(project: Project, name: str, replace: bool, resume: bool) -> None:
    """Refuse to train over an existing run ``name`` unless asked to (``--replace``) or continuing it
    (``--resume``): runs never replace each other silently."""
    if resume or replace or not run_exists(project, name):
        return
    raise BadInputError(
        f"--name {name}",
        f"is an existing run (checkpoints/{name}/{CHECKPOINT}); pass --replace to train over it, "
        f"--resume to continue it, or give a new name such as {next_run_name(project, name)}",
    )


def ended(error: BaseException) -> str:
    """The status of a run that ``error`` ended: stopped when asked to (Ctrl-C, or a job's SIGTERM),
    else failed. Either way the checkpoint of the last finished epoch stays for ``--resume``."""
    return "stopped" if isinstance(error, KeyboardInterrupt) else "failed"


def init_backbone(
    model: torch.nn.Module, checkpoint: Path, prefix: str = "backbone.", complete: bool = True
) -> int:
    """Copy the backbone of a trained classifier checkpoint (``checkpoints/<name>/last.pt`` of
    ``train-classifier``, trained on the same tags) into ``model``; return how many tensors were copied.

    Every tensor of the classifier under ``prefix`` must exist in ``model`` under the same name and shape.
    With ``complete`` (the estimator's network, whose backbone is the classifier's) every tensor of
    ``model`` under ``prefix`` must come from the classifier too; without it (a Mask R-CNN whose ``small``
    body starts with the classifier's layers, ``prefix="backbone.body."``) the rest, such as its deeper
    layers, keeps its initialisation.
    """
    state = load_checkpoint(checkpoint)["model"]
    own = model.state_dict()
    found = {k: v for k, v in state.items() if k.startswith(prefix)}
    wrong = [k for k, v in found.items() if k not in own or own[k].shape != v.shape]
    if complete:
        wrong += [k for k in own if k.startswith(prefix) and k not in found]
    if not found or wrong:
        raise BadInputError(
            str(checkpoint),
            f"its backbone does not fit this network ({len(wrong)} tensors differ, e.g. {wrong[:2]})",
        )
    model.load_state_dict(found, strict=False)
    return len(found)
