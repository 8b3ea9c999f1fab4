"""Receptive fields of a layer sequence, and the grouping of peaks whose fields do not meet.

``wsseg.prm`` uses these to send the seeds of far-apart peaks through one adjoint pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torchvision.models.mobilenetv3 import InvertedResidual
from torchvision.models.resnet import BasicBlock, Bottleneck

#: Layers that act element-wise (shared with ``wsseg.prm``).
_ELEMENTWISE = (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid, nn.SiLU, nn.Sigmoid, nn.GELU, nn.LeakyReLU)

Window = tuple[int, int, int, int]
"""(y0, y1, x0, x1): input rows y0..y1-1 and columns x0..x1-1."""


def receptive_radius(module: nn.Module) -> float:
    """Half-width in input pixels of the receptive field of one output cell of ``module`` (a layer
    sequence as ``PeakClassifier.layers()``): the cell at output index i sees input pixels within
    this distance of ``stride * i``. ``math.inf`` when a layer sees the whole image."""
    radius, _ = _field(module, 0.0, 1)
    return radius


def _field(m: nn.Module, radius: float, jump: int) -> tuple[float, int]:
    """(radius, jump) after ``m``; ``jump`` is input pixels per cell of the current layer."""
    if isinstance(m, nn.Sequential):
        for child in m:
            radius, jump = _field(child, radius, jump)
        return radius, jump
    if isinstance(m, nn.Conv2d | nn.MaxPool2d):
        kernel, stride, dilation = (
            (m.kernel_size, m.stride, m.dilation)
            if isinstance(m, nn.Conv2d)
            else ((m.kernel_size,) * 2, (m.stride,) * 2, (m.dilation,) * 2)
            if isinstance(m.kernel_size, int)
            else (m.kernel_size, m.stride, m.dilation)
        )
        k, s, d = (max(int(v[i]) for i in (0, 1)) for v in (kernel, stride, dilation))
        return radius + (k - 1) / 2 * d * jump, jump * s
    if isinstance(m, BasicBlock | Bottleneck):
        branch = [m.conv1, m.conv2] + ([m.conv3] if isinstance(m, Bottleneck) else [])
        r_branch, j_branch = _field(nn.Sequential(*branch), radius, jump)
        r_short = _field(m.downsample, radius, jump)[0] if m.downsample is not None else radius
        return max(r_branch, r_short), j_branch
    if isinstance(m, InvertedResidual):
        return _field(m.block, radius, jump)
    if isinstance(m, (*_ELEMENTWISE, nn.BatchNorm2d, nn.Dropout, nn.Identity)):
        return radius, jump
    return math.inf, jump  # squeeze-excitation, global pooling, anything unknown: the whole image


def seed_windows(seeds: torch.Tensor, stride: int, radius: float, image_hw: Sequence[int]) -> list[Window]:
    """Input window holding all relevance of each seed of the float KxCxhxw ``seeds``: the receptive
    fields of its non-zero cells, clipped to the image (the whole image when ``radius`` is infinite)."""
    h, w = int(image_hw[0]), int(image_hw[1])
    if math.isinf(radius):
        return [(0, h, 0, w)] * len(seeds)
    reach = math.ceil(radius) + 1
    windows = []
    for seed in seeds:
        rows = torch.nonzero(seed.abs().sum(dim=(0, 2)))[:, 0]
        cols = torch.nonzero(seed.abs().sum(dim=(0, 1)))[:, 0]
        if len(rows) == 0:
            windows.append((0, 0, 0, 0))
            continue
        windows.append(
            (
                max(0, stride * int(rows.min()) - reach),
                min(h, stride * int(rows.max()) + reach + 1),
                max(0, stride * int(cols.min()) - reach),
                min(w, stride * int(cols.max()) + reach + 1),
            )
        )
    return windows


def pack_windows(windows: Sequence[Window]) -> list[list[int]]:
    """Greedy grouping of window indices so that no two windows of a group intersect (in order:
    each window joins the first group it fits)."""
    groups: list[list[int]] = []
    for k, (y0, y1, x0, x1) in enumerate(windows):
        for group in groups:
            if all(y1 <= b[0] or b[1] <= y0 or x1 <= b[2] or b[3] <= x0 for b in (windows[i] for i in group)):
                group.append(k)
                break
        else:
            groups.append([k])
    return groups
