"""The training engine shared by every trainable stage: one plain function, ``train``.

- The model's loss comes from ``loss_fn(model, batch) -> dict[str, Tensor]``; the total is their sum.
- Progress goes to a callback (the command line draws a bar with it, the app stores it in the project).
- A checkpoint is written at the end of every epoch (atomically, by rank 0 only); ``resume=True`` continues
  from the last one. Every epoch reseeds torch, numpy and the sampler from ``(seed, epoch)``, so a run
  killed at any moment and resumed reaches the same weights as an uninterrupted one.
- Under ``torchrun --nproc_per_node=N`` the same call trains with DistributedDataParallel (gloo on the CPU,
  nccl on CUDA) and a distributed sampler; run plainly, it is one process.
- The device is ``--device`` (``wsseg.training.device``: the GPU when torch sees one by default). On
  a GPU the batches come from pinned memory and the steps run in mixed precision (``TrainConfig.amp``).
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from wsseg.errors import BadInputError
from wsseg.fileio import write_bytes, write_json
from wsseg.training.device import amp_dtype, autocast, chosen_device

CHECKPOINT = "last.pt"


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings. ``lr`` is the peak of a one-cycle schedule (AdamW); batch size is per process."""

    epochs: int = 30
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.15
    grad_clip: float = 5.0
    seed: int = 0
    workers: int = 0
    amp: bool = True  # mixed precision on a GPU (no effect on the CPU)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise BadInputError("epochs", f"must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise BadInputError("batch_size", f"must be at least 1, got {self.batch_size}")
        if not self.lr > 0:
            raise BadInputError("lr", f"must be positive, got {self.lr}")


@dataclass(frozen=True)
class Progress:
    """What the callback receives after every step (``step`` counts from 1 within the epoch)."""

    epoch: int
    epochs: int
    step: int
    steps: int
    losses: dict[str, float]
    lr: float
    seconds: float
    epoch_done: bool = False

    @property
    def fraction(self) -> float:
        return (self.epoch + self.step / max(self.steps, 1)) / self.epochs


@dataclass
class TrainResult:
    """History of per-epoch mean losses and where the final checkpoint is."""

    history: list[dict[str, float]] = field(default_factory=list)
    checkpoint: Path | None = None
    stopped: bool = False


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed() -> DistInfo:
    """Join the process group when started by torchrun (``WORLD_SIZE`` > 1); pick the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = chosen_device(local_rank)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    return DistInfo(rank, world, local_rank, device)


def pick_device() -> torch.device:
    """The device of this process (``--device``; by default the GPU when torch sees one, else the CPU)."""
    return chosen_device()


def seed_everything(seed: int, epoch: int = 0) -> None:
    """Seed torch and numpy from (seed, epoch) so each epoch's randomness is reproducible on its own."""
    mixed = (seed * 1_000_003 + epoch * 7919) % (2**31)
    torch.manual_seed(mixed)
    np.random.seed(mixed)


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write a checkpoint atomically (a killed write leaves the previous one intact)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (no code in a checkpoint ever runs)."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(str(path), "checkpoint not found; train first (or check --name)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means the file is not ours
        raise BadInputError(
            str(path), f"not a readable wsseg checkpoint ({error.__class__.__name__})"
        ) from error


def train(
    model: nn.Module,
    dataset: Dataset,
    loss_fn: Callable[[nn.Module, Any], dict[str, torch.Tensor]],
    config: TrainConfig,
    checkpoint_dir: str | Path,
    callback: Callable[[Progress], bool | None] | None = None,
    resume: bool = False,
    extra_state: dict[str, Any] | None = None,
    collate_fn: Callable | None = None,
    validate: Callable[[nn.Module], dict[str, float]] | None = None,
) -> TrainResult:
    """Train ``model`` on ``dataset``; return the loss history.

    ``loss_fn(model, batch)`` returns named losses (their sum is minimised). ``callback(progress)`` is
    called after each step on rank 0, and once more at the end of each epoch (``epoch_done``) just
    before that epoch's checkpoint is written; returning ``False`` stops after the current epoch's checkpoint.
    (a ``False`` after any step also stops there, so a progress bar's "stop" needs no flag of its own).
    ``extra_state`` (JSON-able) is saved in the checkpoint, e.g. the class names and model config.
    ``validate(model)``, called on rank 0 after each epoch with the model in eval mode, returns figures
    on held-out data; they join that epoch's ``history`` entry as ``val_<key>`` (the curve that shows
    whether more epochs would still help).
    """
    info = setup_distributed()
    checkpoint_dir = Path(checkpoint_dir)
    model.to(info.device)
    start_epoch, history = 0, []
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)

    sampler = DistributedSampler(
        dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=config.seed, drop_last=True
    )
    loader = DataLoader(
        dataset,
        batch_size=config.batch_size,
        sampler=sampler,
        num_workers=config.workers,
        collate_fn=collate_fn,
        drop_last=True,
        persistent_workers=False,
        pin_memory=info.device.type == "cuda",  # copied to the GPU from page-locked memory, asynchronously
    )
    steps = len(loader)
    if steps == 0:
        raise BadInputError(
            "dataset", f"{len(dataset)} item(s) is fewer than one batch of {config.batch_size} per process"
        )
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=config.lr,
        total_steps=config.epochs * steps,
        pct_start=config.warmup_fraction,
        anneal_strategy="cos",
    )
    precision = amp_dtype(info.device) if config.amp else None
    # float16 needs its gradients scaled (small ones underflow); bfloat16 and float32 do not
    scaler = torch.amp.GradScaler("cuda", enabled=precision == torch.float16)
    if resume and (checkpoint_dir / CHECKPOINT).exists():
        state = load_checkpoint(checkpoint_dir / CHECKPOINT, map_location=info.device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if "scaler" in state:
            scaler.load_state_dict(state["scaler"])
        start_epoch, history = int(state["epoch"]) + 1, list(state["history"])

    net: nn.Module = model
    if info.world_size > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[info.device.index] if info.device.type == "cuda" else None
        )
    if info.is_main:
        write_json(checkpoint_dir / "config.json", {"train": asdict(config), **(extra_state or {})})

    result = TrainResult(history=history)
    started = time.perf_counter()
    stop_requested = False

    def report(epoch: int, step: int, losses: dict[str, float], epoch_done: bool = False) -> Progress:
        elapsed = time.perf_counter() - started
        lr = scheduler.get_last_lr()[0]
        return Progress(epoch, config.epochs, step, steps, losses, lr, elapsed, epoch_done=epoch_done)

    for epoch in range(start_epoch, config.epochs):
        seed_everything(config.seed, epoch)
        sampler.set_epoch(epoch)
        net.train()
        sums: dict[str, float] = {}
        for step, batch in enumerate(loader, start=1):
            batch = _to_device(batch, info.device)
            with autocast(info.device, precision):
                losses = loss_fn(net, batch)
                total = sum(losses.values())
            if not torch.isfinite(total):
                raise BadInputError("training", f"loss became {float(total)} at epoch {epoch} step {step}")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(total).backward()
            if config.grad_clip > 0:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            values = {k: float(v.detach()) for k, v in losses.items()}
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + v
            if info.is_main and callback is not None and callback(report(epoch, step, values)) is False:
                stop_requested = True
        means = {k: v / steps for k, v in sums.items()}
        scores: dict[str, float] = {}
        if validate is not None and info.is_main:
            model.eval()
            scores = {f"val_{k}": float(v) for k, v in validate(model).items()}
            model.train()
        history.append({**means, **scores})
        keep_going = not stop_requested
        if info.is_main:
            # The epoch's report goes out before its checkpoint is written: a job killed between the two
            # then redoes the epoch on resume and its stored curve has no gap (the other order lost the
            # epoch's last points from the job's row).
            if callback is not None and callback(report(epoch, steps, means, epoch_done=True)) is False:
                keep_going = False
            save_checkpoint(
                checkpoint_dir / CHECKPOINT,
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    **({"scaler": scaler.state_dict()} if scaler.is_enabled() else {}),
                    "epoch": epoch,
                    "history": history,
                    "extra": extra_state or {},
                },
            )
            result.checkpoint = checkpoint_dir / CHECKPOINT
        if info.world_size > 1:
            flag = torch.tensor([1.0 if keep_going else 0.0], device=info.device)
            dist.broadcast(flag, src=0)
            keep_going = bool(flag.item())
        if not keep_going:
            result.stopped = True
            break
    result.history = history
    return result


def tqdm_callback(desc: str, position: int | None = None) -> Callable[[Progress], None]:
    """A progress callback that draws a tqdm bar over all steps of all epochs, with the running losses
    (on terminal line ``position`` when several processes draw bars at once)."""
    from tqdm import tqdm

    bar: dict[str, Any] = {}

    def callback(progress: Progress) -> None:
        if "bar" not in bar:
            bar["bar"] = tqdm(
                total=progress.epochs * progress.steps,
                desc=desc,
                unit="step",
                dynamic_ncols=True,
                position=position,
            )
            bar["bar"].update(progress.epoch * progress.steps)
        if progress.epoch_done:
            if progress.epoch + 1 == progress.epochs:
                bar["bar"].close()
            return
        bar["bar"].update(1)
        shown = {k: f"{v:.3f}" for k, v in progress.losses.items()}
        bar["bar"].set_postfix(epoch=f"{progress.epoch + 1}/{progress.epochs}", **shown)

    return callback
