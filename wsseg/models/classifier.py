"""Classifier with class response maps (CRMs) and the peak stimulation layer (PRM, step 1-2).

backbone -> dropout -> 1x1 conv -> C class response maps -> PSL (or global average pooling) -> C scores.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from wsseg.errors import BadInputError
from wsseg.models.backbones import BACKBONES, build_backbone
from wsseg.models.peaks import PeakConfig, global_average_pooling, peak_stimulation


@dataclass(frozen=True)
class ClassifierConfig:
    """Settings of ``PeakClassifier``.

    num_classes: int >= 1, number of tags (no background class).
    backbone: a key of ``wsseg.models.backbones.BACKBONES``; PRM used ResNet-50, "small" is the
        from-scratch CPU network.
    weights: None (random init), "imagenet" (torchvision download, not available offline) or a
        path to a local weights file.
    peak_stimulation: True for PRM's PSL, False for global average pooling (plain CAM).
    peaks: settings of the PSL.
    dropout: probability in [0, 1) of dropping feature-map activations before the 1x1 conv.
    small_width: channel width of the "small" backbone (ignored by the others).
    small_dilations: dilations of the "small" backbone's last layers at stride 8, one layer each;
        its receptive field is 41 + 16 * sum(small_dilations) pixels.
    frozen_backbone: train only the 1x1 head on the pretrained backbone's features (its weights and
        BatchNorm statistics stay as loaded); needs ``weights``.
    """

    num_classes: int
    backbone: str = "resnet50"
    weights: str | None = None
    peak_stimulation: bool = True
    peaks: PeakConfig = field(default_factory=PeakConfig)
    dropout: float = 0.0
    small_width: int = 32
    small_dilations: tuple[int, ...] = (1,)
    frozen_backbone: bool = False

    def __post_init__(self) -> None:
        if (
            isinstance(self.num_classes, bool)
            or not isinstance(self.num_classes, int)
            or self.num_classes < 1
        ):
            raise BadInputError("num_classes", f"must be an integer >= 1, got {self.num_classes!r}")
        if self.backbone not in BACKBONES:
            raise BadInputError(
                "backbone", f"unknown backbone {self.backbone!r}; expected one of {sorted(BACKBONES)}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise BadInputError("dropout", f"must be in [0, 1), got {self.dropout!r}")
        if self.frozen_backbone and self.weights is None:
            raise BadInputError(
                "frozen_backbone", "needs pretrained weights: a random backbone would stay random"
            )


class PeakClassifier(nn.Module):
    """backbone -> 1x1 conv -> CRMs -> PSL / GAP.

    ``layers()`` gives the same computation as a flat ``nn.Sequential`` (images -> raw CRMs), so
    that the peak backpropagation can walk it without hooks.
    """

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config
        kwargs = (
            {"width": config.small_width, "dilations": tuple(config.small_dilations)}
            if config.backbone == "small"
            else {}
        )
        self.backbone = build_backbone(config.backbone, config.weights, **kwargs)
        self.stride: int = self.backbone.stride
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Conv2d(self.backbone.out_channels, config.num_classes, kernel_size=1)
        if config.frozen_backbone:
            self.backbone.requires_grad_(False)
            self.backbone.eval()

    def train(self, mode: bool = True) -> PeakClassifier:
        """As ``nn.Module.train``; a frozen backbone stays in eval mode (its BatchNorm statistics kept)."""
        super().train(mode)
        if self.config.frozen_backbone:
            self.backbone.eval()
        return self

    def layers(self) -> nn.Sequential:
        """The network up to the raw CRMs as one flat sequence of (shared) modules."""
        return nn.Sequential(*self.backbone.body, self.dropout, self.head)

    def class_response_maps(self, images: torch.Tensor) -> torch.Tensor:
        """float Bx3xHxW normalised images -> float BxCxhxw raw CRMs (h = ceil(H / stride))."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise BadInputError("images", f"expected a float Bx3xHxW batch, got shape {tuple(images.shape)}")
        return self.head(self.dropout(self.backbone(images)))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """float Bx3xHxW normalised images -> dict.

        ``crm``: float BxCxhxw raw CRMs; ``logits``: float BxC class scores (PSL or GAP). With the
        PSL on, also ``crm_up`` (float BxCx(h*f)x(w*f) upsampled CRMs) and ``peaks`` (bool, same
        shape, the peaks that made each score).
        """
        crm = self.class_response_maps(images)
        if self.config.peak_stimulation:
            out = peak_stimulation(crm, self.config.peaks)
        else:
            out = global_average_pooling(crm)
        return {"crm": crm, **out}

    def loss(self, outputs: dict[str, torch.Tensor], targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Multilabel soft margin loss of ``outputs["logits"]`` against float/int BxC {0, 1} tags."""
        logits = outputs["logits"]
        if targets.shape != logits.shape:
            raise BadInputError(
                "targets", f"expected shape {tuple(logits.shape)}, got {tuple(targets.shape)}"
            )
        return {"classification": F.multilabel_soft_margin_loss(logits, targets.to(logits.dtype))}
