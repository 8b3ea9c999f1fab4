"""A toy model and dataset for the engine tests (also run as a script by them, to be killed)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

from wsseg.training.engine import TrainConfig, train


def toy_dataset() -> TensorDataset:
    g = torch.Generator().manual_seed(123)
    x = torch.randn(48, 3, 8, 8, generator=g)
    y = (x.mean(dim=(1, 2, 3)) > 0).float()
    return TensorDataset(x, y)


def toy_model() -> nn.Module:
    torch.manual_seed(7)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 1),
    )


def toy_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
    x, y = batch
    return {"bce": nn.functional.binary_cross_entropy_with_logits(model(x).squeeze(1), y)}


CONFIG = TrainConfig(epochs=4, batch_size=8, lr=1e-2, seed=3)


def run(checkpoint_dir: Path, resume: bool = False, step_sleep: float = 0.0) -> nn.Module:
    model = toy_model()

    def slow(_progress: object) -> None:
        time.sleep(step_sleep)

    train(model, toy_dataset(), toy_loss, CONFIG, checkpoint_dir, callback=slow, resume=resume)
    return model


if __name__ == "__main__":
    torch.set_num_threads(1)  # as the test process (conftest): same arithmetic order, same weights
    run(Path(sys.argv[1]), resume=False, step_sleep=float(sys.argv[2]))
