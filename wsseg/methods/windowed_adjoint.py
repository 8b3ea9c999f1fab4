"""The adjoint of a plain convolution stack, run only inside each peak's receptive field.

``wsseg.methods.prm`` sends the one-hot seeds of an image's K peaks down the network's adjoint (the relevance
rules of peak backpropagation, or the plain input gradient). Run on whole feature maps, each pass costs
about one forward however small the seed. But a seed of a few CRM cells only ever reaches the
receptive field of those cells, and that window can be followed layer by layer:

    a window of h x w output cells at offset o (per axis) of a convolution with kernel k, stride s,
    dilation d and padding p comes from the h' = (h - 1) s + d (k - 1) + 1 input cells at offset o s - p,

which is exactly what ``conv_transpose2d`` of the cropped seed with *no* padding returns. So each of
the K seeds is cropped to the same window size (the largest of their supports), the K crops go down
as one batch, every stored forward tensor (the shifted activation ``a``, the normaliser ``1 / z``, the
activation derivative) is cut to each crop's own offset, zero outside the map (what zero padding
means), and the input-level crops are put back into full-size maps. The maps are the same as the
full-size adjoint's (the tests check it); the work per peak shrinks with the window: on the 57 px
``small`` backbone and a 160 px image, from the whole image to 57 x 57 pixels at the input and to
a few cells at stride 8.

It applies to a flat layer sequence of convolutions (zero padding), BatchNorm, element-wise
activations, dropout and identity: the ``small`` backbone. Residual blocks, max pooling and
squeeze-excitation go through the full-size adjoint of ``wsseg.methods.prm`` (packed where windows are
disjoint).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from wsseg.methods.adjoint import _EPS, derivative, fold_batchnorm, folded_weight, shifted
from wsseg.models.receptive_field import _ELEMENTWISE

_PASS_THROUGH = (nn.Dropout, nn.Identity)

Offsets = list[tuple[int, int]]


@dataclass(frozen=True)
class _Conv:
    """One convolution (BatchNorm folded in) of the walk: the weight its adjoint uses, and per
    element of its input the factor applied after the adjoint (``a``: shifted activation, or None
    for the gradient) and per element of its output the one applied before (``inv_z``, or None)."""

    conv: nn.Conv2d
    weight: torch.Tensor
    a: torch.Tensor | None
    inv_z: torch.Tensor | None
    in_hw: tuple[int, int]


@dataclass(frozen=True)
class _Elementwise:
    """An element-wise layer: its derivative (gradient method) or None (relevance passes through)."""

    derivative: torch.Tensor | None


def is_plain(modules: Sequence[nn.Module]) -> bool:
    """Whether ``modules`` (a flat layer list as ``PeakClassifier.layers()``) is a plain stack the
    windowed adjoint handles: zero-padded convolutions, BatchNorm right after a convolution,
    element-wise activations, dropout and identity."""
    previous: nn.Module | None = None
    for m in modules:
        if isinstance(m, nn.Conv2d):
            if m.padding_mode != "zeros" or isinstance(m.padding, str):
                return False
        elif isinstance(m, nn.BatchNorm2d):
            if not isinstance(previous, nn.Conv2d):
                return False
        elif not isinstance(m, (*_ELEMENTWISE, *_PASS_THROUGH)):
            return False
        previous = m
    return True


def walk(modules: Sequence[nn.Module], x: torch.Tensor, excite: bool) -> tuple[torch.Tensor, list]:
    """Forward the plain stack ``modules`` (``is_plain``) on the batch-1 ``x`` (no grad, eval mode).

    Returns the output and the steps ``windowed_adjoint`` needs, in forward order."""
    steps: list[_Conv | _Elementwise] = []
    for m, bn in fold_batchnorm(list(modules)):
        if isinstance(m, nn.Conv2d):
            value = bn(m(x)) if bn is not None else m(x)
            weight = folded_weight(m, bn)
            a = inv_z = None
            if excite:
                a, weight = shifted(x), weight.clamp(min=0)
                z = F.conv2d(a, weight, None, m.stride, m.padding, m.dilation, m.groups)
                inv_z = z.clamp(min=_EPS).reciprocal()
            steps.append(_Conv(m, weight, a, inv_z, (x.shape[-2], x.shape[-1])))
            x = value
        elif isinstance(m, _ELEMENTWISE):
            steps.append(_Elementwise(None if excite else derivative(m, x)))
            x = F.relu(x) if isinstance(m, nn.ReLU) else m(x.clone())
    return x, steps


def _crop(t: torch.Tensor, offsets: Offsets, size: tuple[int, int]) -> torch.Tensor:
    """K windows of ``size`` at ``offsets`` cut from ``t`` (1xCxHxW shared, or KxCxHxW one per window),
    zero where a window leaves the map."""
    (h, w), (height, width) = size, t.shape[-2:]
    top = max(0, -min(y for y, _ in offsets))
    left = max(0, -min(x for _, x in offsets))
    bottom = max(0, max(y for y, _ in offsets) + h - height)
    right = max(0, max(x for _, x in offsets) + w - width)
    if top or left or bottom or right:
        t = F.pad(t, (left, right, top, bottom))
    shared = t.shape[0] == 1
    return torch.stack(
        [
            t[0 if shared else k, :, y + top : y + top + h, x + left : x + left + w]
            for k, (y, x) in enumerate(offsets)
        ]
    )


def _conv_back(step: _Conv, r: torch.Tensor, offsets: Offsets) -> tuple[torch.Tensor, Offsets]:
    conv = step.conv
    if step.inv_z is not None:
        r = r * _crop(step.inv_z, offsets, r.shape[-2:])
    g = F.conv_transpose2d(r, step.weight, None, conv.stride, 0, 0, conv.groups, conv.dilation)
    offsets = [
        (y * conv.stride[0] - conv.padding[0], x * conv.stride[1] - conv.padding[1]) for y, x in offsets
    ]
    # relevance: times the shifted input; gradient: only the cells inside the input map exist
    inside = step.a if step.a is not None else g.new_ones((1, 1, *step.in_hw))
    return g * _crop(inside, offsets, g.shape[-2:]), offsets


def windowed_adjoint(steps: list, seeds: torch.Tensor, image_hw: Sequence[int]) -> torch.Tensor:
    """The adjoint of the walked stack for K seeds, each computed inside its own window.

    seeds: float KxCxhxw at the stack's output (one seed per row, any support). Returns float
    KxHxW: the relevance (or gradient) at the input summed over its channels, equal to the full-size
    adjoint's."""
    k = len(seeds)
    if k == 0:
        return seeds.new_zeros((0, *image_hw))
    support = [torch.nonzero(s.abs().sum(dim=0)) for s in seeds]
    boxes = [
        (p.amin(dim=0).tolist(), p.amax(dim=0).tolist()) if len(p) else ([0, 0], [0, 0]) for p in support
    ]
    size = (max(hi[0] - lo[0] for lo, hi in boxes) + 1, max(hi[1] - lo[1] for lo, hi in boxes) + 1)
    offsets: Offsets = [(lo[0], lo[1]) for lo, _ in boxes]
    r = _crop(seeds, offsets, size)
    for step in reversed(steps):
        if isinstance(step, _Conv):
            r, offsets = _conv_back(step, r, offsets)
        elif step.derivative is not None:
            r = r * _crop(step.derivative, offsets, r.shape[-2:])
    r = r.sum(dim=1)
    out = r.new_zeros((k, *image_hw))
    h, w = r.shape[-2:]
    for i, (y, x) in enumerate(offsets):
        y0, y1, x0, x1 = max(y, 0), min(y + h, image_hw[0]), max(x, 0), min(x + w, image_hw[1])
        if y1 > y0 and x1 > x0:
            out[i, y0:y1, x0:x1] = r[i, y0 - y : y1 - y, x0 - x : x1 - x]
    return out
