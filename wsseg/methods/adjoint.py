"""The adjoint of a classifier's layers for a batch of seeds, run on whole feature maps.

``walk_sequence`` runs the forward of a flat layer list once (batch 1) and returns the adjoint that
takes K seeds at the output to their K maps at the input, applying the rules ``wsseg.methods.prm`` describes:
PRM's peak backpropagation (``excite``: relevance split in proportion to the shifted activation times
the positive weight, normalised by ``z``) or the plain input gradient. It handles convolutions with
their BatchNorm folded in, residual and inverted-residual blocks, squeeze-excitation, max pooling and
element-wise layers. ``wsseg.methods.windowed_adjoint`` is the faster one for plain convolution stacks.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck
from torchvision.ops.misc import SqueezeExcitation

from wsseg.models.receptive_field import _ELEMENTWISE, inverted_residual

Back = Callable[[torch.Tensor], torch.Tensor]

_EPS = 1e-9


def fold_batchnorm(modules: list[nn.Module]) -> list[tuple[nn.Module, nn.BatchNorm2d | None]]:
    """A flat layer list as (layer, the BatchNorm right after it when the layer is a conv)."""
    pairs: list[tuple[nn.Module, nn.BatchNorm2d | None]] = []
    i = 0
    while i < len(modules):
        m = modules[i]
        nxt = modules[i + 1] if i + 1 < len(modules) else None
        bn = nxt if isinstance(m, nn.Conv2d) and isinstance(nxt, nn.BatchNorm2d) else None
        pairs.append((m, bn))
        i += 2 if bn is not None else 1
    return pairs


def folded_weight(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> torch.Tensor:
    """``conv``'s weight with the (eval-mode) BatchNorm ``bn`` after it folded in."""
    if bn is None:
        return conv.weight
    return conv.weight * (bn.weight / torch.sqrt(bn.running_var + bn.eps)).view(-1, 1, 1, 1)


def shifted(x: torch.Tensor) -> torch.Tensor:
    """The batch-1 activation ``x`` minus its minimum when that is negative (the same tensor otherwise)."""
    low = x.amin()
    return x - low if low < 0 else x


def derivative(f: nn.Module, pre: torch.Tensor) -> torch.Tensor:
    """Element-wise derivative of activation ``f`` at ``pre`` (same shape)."""
    with torch.enable_grad():
        x = pre.detach().clone().requires_grad_(True)
        (d,) = torch.autograd.grad(f(x.clone()).sum(), x)
    return d


def _conv_adjoint(conv: nn.Conv2d, weight: torch.Tensor, r: torch.Tensor, in_hw: torch.Size) -> torch.Tensor:
    """Adjoint of ``conv`` (with ``weight``, no bias) applied to a batch of output seeds ``r``.

    (Running it on the bounding box of the non-zero seeds only was tried: on 160 px images the
    per-operation overhead dominates and it measured no faster; docs/benchmark.md.)
    """
    if isinstance(conv.padding, str):
        shape = (r.shape[0], weight.shape[1] * conv.groups, *in_hw)
        return torch.nn.grad.conv2d_input(
            shape, weight, r, conv.stride, conv.padding, conv.dilation, conv.groups
        )
    extra = [
        in_hw[i]
        - (
            (r.shape[2 + i] - 1) * conv.stride[i]
            - 2 * conv.padding[i]
            + conv.dilation[i] * (weight.shape[2 + i] - 1)
            + 1
        )
        for i in (0, 1)
    ]
    return F.conv_transpose2d(r, weight, None, conv.stride, conv.padding, extra, conv.groups, conv.dilation)


def _conv_term(conv: nn.Conv2d, bn: nn.BatchNorm2d | None, x: torch.Tensor, excite: bool):
    """(real output, z term or None, adjoint) of conv+bn applied to ``x``."""
    value, weight = (bn(conv(x)) if bn is not None else conv(x)), folded_weight(conv, bn)
    a, z = None, None
    if excite:
        a, weight = shifted(x), weight.clamp(min=0)
        z = F.conv2d(a, weight, None, conv.stride, conv.padding, conv.dilation, conv.groups)

    def back(r: torch.Tensor) -> torch.Tensor:
        g = _conv_adjoint(conv, weight, r, x.shape[-2:])
        return g * a if a is not None else g

    return value, z, back


def _identity_term(x: torch.Tensor, excite: bool):
    a = shifted(x) if excite else None
    return x, a, (lambda r: r * a) if a is not None else (lambda r: r)


def _sum_node(terms: list, excite: bool) -> tuple[torch.Tensor, Callable[[torch.Tensor], list[torch.Tensor]]]:
    """Linear node summing ``terms``; its adjoint returns one relevance per term."""
    value = sum(t[0] for t in terms)
    if not excite:
        return value, lambda r: [t[2](r) for t in terms]
    z = sum(t[1] for t in terms).clamp(min=_EPS)
    return value, lambda r: [t[2](r / z) for t in terms]


def walk_sequence(modules: list[nn.Module], x: torch.Tensor, excite: bool) -> tuple[torch.Tensor, Back]:
    backs: list[Back] = []
    for m, bn in fold_batchnorm(modules):
        if isinstance(m, nn.Conv2d):
            x, node_back = _sum_node([_conv_term(m, bn, x, excite)], excite)
            backs.append(lambda r, nb=node_back: nb(r)[0])
        else:
            x, b = _walk(m, x, excite)
            backs.append(b)

    def back(r: torch.Tensor) -> torch.Tensor:
        for b in reversed(backs):
            r = b(r)
        return r

    return x, back


def _walk_block(m: BasicBlock | Bottleneck, x: torch.Tensor, excite: bool) -> tuple[torch.Tensor, Back]:
    convs = [(m.conv1, m.bn1), (m.conv2, m.bn2)] + ([(m.conv3, m.bn3)] if isinstance(m, Bottleneck) else [])
    inner = [layer for conv, bn in convs[:-1] for layer in (conv, bn, m.relu)]
    out, inner_back = walk_sequence(inner, x, excite)
    short = _conv_term(m.downsample[0], m.downsample[1], x, excite) if m.downsample is not None else None
    summed, node_back = _sum_node(
        [_conv_term(*convs[-1], out, excite), short or _identity_term(x, excite)], excite
    )
    y, relu_back = _walk(m.relu, summed, excite)

    def back(r: torch.Tensor) -> torch.Tensor:
        r_branch, r_short = node_back(relu_back(r))
        return inner_back(r_branch) + r_short

    return y, back


def _walk_inverted_residual(
    parts: tuple[list[nn.Module], bool], x: torch.Tensor, excite: bool
) -> tuple[torch.Tensor, Back]:
    branch, residual = parts
    if not residual:
        return walk_sequence(branch, x, excite)
    out, inner_back = walk_sequence(branch[:-1], x, excite)
    project = branch[-1]
    y, node_back = _sum_node(
        [_conv_term(project[0], project[1], out, excite), _identity_term(x, excite)], excite
    )

    def back(r: torch.Tensor) -> torch.Tensor:
        r_branch, r_short = node_back(r)
        return inner_back(r_branch) + r_short

    return y, back


def _walk_squeeze_excitation(
    m: SqueezeExcitation, x: torch.Tensor, excite: bool
) -> tuple[torch.Tensor, Back]:
    pre1 = m.fc1(m.avgpool(x))
    pre2 = m.fc2(m.activation(pre1.clone()))
    scale = m.scale_activation(pre2.clone())
    if excite:
        return scale * x, lambda r: r
    d1, d2 = derivative(m.activation, pre1), derivative(m.scale_activation, pre2)

    def back(r: torch.Tensor) -> torch.Tensor:
        k = r.shape[0]
        g = (r * x).sum(dim=(2, 3), keepdim=True) * d2
        g = torch.nn.grad.conv2d_input((k, *pre1.shape[1:]), m.fc2.weight, g) * d1
        g = torch.nn.grad.conv2d_input((k, x.shape[1], 1, 1), m.fc1.weight, g)
        return r * scale + g / (x.shape[2] * x.shape[3])

    return scale * x, back


def _walk(m: nn.Module, x: torch.Tensor, excite: bool) -> tuple[torch.Tensor, Back]:
    """Forward ``m`` on the batch-1 ``x``; return its output and the adjoint for a batch of seeds."""
    if isinstance(m, nn.Sequential):
        return walk_sequence(list(m), x, excite)
    if isinstance(m, BasicBlock | Bottleneck):
        return _walk_block(m, x, excite)
    if (parts := inverted_residual(m)) is not None:
        return _walk_inverted_residual(parts, x, excite)
    if isinstance(m, SqueezeExcitation):
        return _walk_squeeze_excitation(m, x, excite)
    if isinstance(m, _ELEMENTWISE):
        y = F.relu(x) if isinstance(m, nn.ReLU) else m(x.clone())
        if excite:
            return y, lambda r: r
        d = derivative(m, x)
        return y, lambda r: r * d
    if isinstance(m, nn.MaxPool2d):
        y, idx = F.max_pool2d(
            x, m.kernel_size, m.stride, m.padding, m.dilation, ceil_mode=m.ceil_mode, return_indices=True
        )

        def back(r: torch.Tensor) -> torch.Tensor:
            k, c = r.shape[:2]
            out = r.new_zeros((k, c, x.shape[2] * x.shape[3]))
            out.scatter_add_(2, idx.flatten(2).expand(k, -1, -1), r.flatten(2))
            return out.view(k, c, *x.shape[2:])

        return y, back
    if isinstance(m, nn.Dropout | nn.Identity):
        return x, lambda r: r
    raise NotImplementedError(f"peak backpropagation does not handle {type(m).__name__} layers")
