"""Receptive fields of a layer sequence: how far from a CRM cell its input evidence can lie."""

from __future__ import annotations

import math

from torch import nn
from torchvision.models.mobilenetv2 import InvertedResidual as InvertedResidualV2
from torchvision.models.mobilenetv3 import InvertedResidual
from torchvision.models.resnet import BasicBlock, Bottleneck

#: Layers that act element-wise (shared with ``wsseg.methods.prm``).
_ELEMENTWISE = (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid, nn.SiLU, nn.Sigmoid, nn.GELU, nn.LeakyReLU)


def inverted_residual(m: nn.Module) -> tuple[list[nn.Module], bool] | None:
    """A MobileNet inverted residual block as (its branch's layers, the last one a Sequential of the
    projecting conv and its BatchNorm; whether the input is added back), for MobileNetV3's and V2's
    blocks alike; None for any other layer."""
    if isinstance(m, InvertedResidual):
        return list(m.block), bool(m.use_res_connect)
    if isinstance(m, InvertedResidualV2):
        layers = list(m.conv)
        return [*layers[:-2], nn.Sequential(layers[-2], layers[-1])], bool(m.use_res_connect)
    return None


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
    if (parts := inverted_residual(m)) is not None:
        return _field(nn.Sequential(*parts[0]), radius, jump)
    if isinstance(m, (*_ELEMENTWISE, nn.BatchNorm2d, nn.Dropout, nn.Identity)):
        return radius, jump
    return math.inf, jump  # squeeze-excitation, global pooling, anything unknown: the whole image
