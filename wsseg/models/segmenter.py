"""Fully convolutional segmentation network: p(z|x), a distribution over labels at every pixel.

backbone (stride 8) -> 3x3 conv -> upsample x2 -> concat with the backbone's stride-4 features ->
3x3 conv -> 1x1 conv to K label logits at stride 4 -> bilinear upsampling to the input size.

The stride-4 skip is a small DeepLabv3+-style decoder: boundaries then move in 4-pixel steps, not 8.
The same network serves the weakly supervised estimator and the fully supervised baseline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from wsseg.errors import BadInputError
from wsseg.models.backbones import BACKBONES, build_backbone


@dataclass(frozen=True)
class SegmenterConfig:
    """Settings of ``Segmenter``.

    num_labels: K >= 2, number of output labels (background included where the data has one).
    backbone: a key of ``wsseg.models.backbones.BACKBONES`` ("small" is the from-scratch CPU network).
    weights: None (random init), "imagenet" (torchvision download) or a local weights file path.
    small_width: channel width of the "small" backbone (ignored by the others).
    decoder: channels of the decoder convolutions.
    """

    num_labels: int
    backbone: str = "small"
    weights: str | None = None
    small_width: int = 32
    decoder: int = 32

    def __post_init__(self) -> None:
        if isinstance(self.num_labels, bool) or not isinstance(self.num_labels, int) or self.num_labels < 2:
            raise BadInputError("num_labels", f"must be an integer >= 2, got {self.num_labels!r}")
        if self.backbone not in BACKBONES:
            raise BadInputError(
                "backbone", f"unknown backbone {self.backbone!r}; expected one of {sorted(BACKBONES)}"
            )
        if self.decoder < 1:
            raise BadInputError("decoder", f"must be a positive integer, got {self.decoder}")


def _conv(c_in: int, c_out: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)
    )


class Segmenter(nn.Module):
    """``forward(images float32 Bx3xHxW normalised) -> float32 BxKxHxW label logits``.

    ``softmax(logits, dim=1)`` is p(z|x). The stride-4 features are the last output of the backbone's
    ``body`` whose size is ceil(H/4) x ceil(W/4), found by shape, so any backbone of ``BACKBONES`` works.
    """

    def __init__(self, config: SegmenterConfig) -> None:
        super().__init__()
        self.config = config
        kwargs = {"width": config.small_width} if config.backbone == "small" else {}
        self.backbone = build_backbone(config.backbone, config.weights, **kwargs)
        low_channels = self._low_channels()
        d = config.decoder
        self.high = _conv(self.backbone.out_channels, d, 3)
        self.low = _conv(low_channels, d // 2, 1)
        self.fuse = _conv(d + d // 2, d, 3)
        self.head = nn.Conv2d(d, config.num_labels, 1)

    def _low_channels(self) -> int:
        with torch.no_grad():
            was = self.backbone.training
            self.backbone.eval()
            low, _ = self._features(torch.zeros(1, 3, 32, 32))
            self.backbone.train(was)
        return low.shape[1]

    def _features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(stride-4 features, stride-8 features) of the backbone."""
        quarter = (-(-images.shape[2] // 4), -(-images.shape[3] // 4))
        low, x = None, images
        for layer in _layers(self.backbone.body):
            x = layer(x)
            if tuple(x.shape[2:]) == quarter:
                low = x
        if low is None:
            raise BadInputError(self.config.backbone, "backbone has no stride-4 layer for the decoder")
        return low, x

    def forward(self, images: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """Logits at ``scale`` times the input size (rounded up); training computes its losses at 0.5."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise BadInputError("images", f"expected a float Bx3xHxW batch, got shape {tuple(images.shape)}")
        low, high = self._features(images)
        high = F.interpolate(self.high(high), size=low.shape[2:], mode="bilinear", align_corners=False)
        logits = self.head(self.fuse(torch.cat([high, self.low(low)], dim=1)))
        size = (math.ceil(images.shape[2] * scale), math.ceil(images.shape[3] * scale))
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def _layers(body: nn.Module) -> list[nn.Module]:
    """The layers of a backbone's body in order, plain ``nn.Sequential`` containers opened (a
    torchvision MobileNet's body is one ``features`` sequence whose stride-4 output lies inside)."""
    if type(body) is not nn.Sequential:
        return [body]
    return [leaf for layer in body for leaf in _layers(layer)]
