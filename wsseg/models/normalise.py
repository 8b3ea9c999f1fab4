"""Input normalisation, the one place it is defined: uint8 RGB images in, the float tensors every model
takes out (and back, for the losses that need the pixels)."""

from __future__ import annotations

import numpy as np
import torch

from wsseg.errors import BadInputError

#: Per-channel RGB mean and standard deviation of ImageNet on [0, 1] images (torchvision's values).
#: Used for every backbone, pretrained or not, so checkpoints and weights stay interchangeable.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 RGB images, BxHxWx3 (or one HxWx3), numpy or tensor -> float32 Bx3xHxW.

    Each value becomes ``(v / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]``, roughly in [-2.1, 2.7].
    """
    t = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.array(images, copy=True))
    if t.dtype != torch.uint8:
        raise BadInputError("images", f"expected uint8 pixels, got dtype {t.dtype}")
    if t.ndim == 3:
        t = t[None]
    if t.ndim != 4 or t.shape[-1] != 3:
        raise BadInputError("images", f"expected BxHxWx3 or HxWx3 RGB, got shape {tuple(t.shape)}")
    x = t.permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous()


def to_tensor(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """HxWx3 or BxHxWx3 uint8 -> 3xHxW or Bx3xHxW float32: ``normalize`` keeping an unbatched image unbatched."""
    x = normalize(images)
    return x[0] if images.ndim == 3 else x


def denormalize(images: torch.Tensor) -> torch.Tensor:
    """Normalised float Bx3xHxW (``normalize``) -> float Bx3xHxW on the 0..255 scale."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    return (images * std + mean) * 255.0
