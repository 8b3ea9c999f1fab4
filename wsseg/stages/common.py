"""What every training stage shares: its checkpoint folder and state, and its schedule from the command line."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from wsseg.engine import CHECKPOINT, TrainConfig, load_checkpoint
from wsseg.store import Project


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


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The schedule options every training command takes (--epochs, --batch-size, --lr, --seed, --workers)."""
    return TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed, workers=args.workers
    )


def ended(error: BaseException) -> str:
    """The status of a run that ``error`` ended: stopped when asked to (Ctrl-C, or a job's SIGTERM),
    else failed. Either way the checkpoint of the last finished epoch stays for ``--resume``."""
    return "stopped" if isinstance(error, KeyboardInterrupt) else "failed"
