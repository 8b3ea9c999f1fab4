"""Where a command trains or predicts: ``--device`` (the environment variable ``WSSEG_DEVICE``), by
default the GPU when torch sees one, else the CPU; and the mixed precision a GPU trains with.

Mixed precision (``autocast``) is used on CUDA only: the forward pass and the losses run in bfloat16
where the GPU has it (the same exponent range as float32: no loss scaling), else in float16 with a
gradient scaler; torch keeps the ops that need float32 (softmax, losses, reductions) in float32. On
the CPU everything stays float32, as the tests and the CPU benchmarks measure it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from wsseg.errors import BadInputError

#: The environment variable ``--device`` sets (so a torchrun's processes see it too).
DEVICE_ENV = "WSSEG_DEVICE"

CHOICES = "auto, cpu, cuda or cuda:N"


def chosen_device(local_rank: int = 0) -> torch.device:
    """The device of this process: ``WSSEG_DEVICE`` (auto, cpu, cuda, cuda:N; default auto: the GPU
    when torch sees one). Plain ``cuda`` under torchrun is the GPU of the process's ``local_rank``.
    A BadInputError names the value when it is not a device or not on this machine."""
    wanted = (os.environ.get(DEVICE_ENV) or "auto").strip().lower()
    if wanted == "auto":
        wanted = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(wanted)
    except RuntimeError:
        raise BadInputError(f"--device {wanted}", f"is not a device; expected {CHOICES}") from None
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type != "cuda":
        raise BadInputError(f"--device {wanted}", f"is not supported; expected {CHOICES}")
    if not torch.cuda.is_available():
        raise BadInputError(f"--device {wanted}", "torch sees no CUDA GPU on this machine; use --device cpu")
    count = torch.cuda.device_count()
    index = local_rank % count if device.index is None else device.index
    if index >= count:
        raise BadInputError(
            f"--device {wanted}", f"this machine has {count} GPU(s): cuda:0 to cuda:{count - 1}"
        )
    return torch.device(f"cuda:{index}")


@contextlib.contextmanager
def device_option(value: str) -> Iterator[None]:
    """``--device value`` for the command run inside: set in the environment (torchrun's processes and a
    job's see it), refused at once when this machine lacks it, and the environment as it was after (a
    later command in the same process starts clean)."""
    before = os.environ.get(DEVICE_ENV)
    os.environ[DEVICE_ENV] = value
    try:
        chosen_device()
        yield
    finally:
        if before is None:
            os.environ.pop(DEVICE_ENV, None)
        else:
            os.environ[DEVICE_ENV] = before


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype of training on ``device``: bfloat16 or float16 on CUDA, None (float32) elsewhere."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    """Mixed precision inside on ``device`` with ``dtype``; nothing changes when ``dtype`` is None."""
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield
