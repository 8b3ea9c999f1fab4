"""Peak response maps (PRM, step 3): for each class peak, the input evidence for that one instance.

Two methods, in ``METHODS``:

``"excitation"`` (PRM's peak backpropagation). Relevance goes top-down from the peak; at every
linear layer (a conv with its BatchNorm folded in, or the sum of a residual block) a parent's
relevance is split among its children in proportion to ``a_i * w+_ij``: the child's bottom-up
activation ``a_i`` (shifted to be >= 0: minus its minimum over the layer when that is negative,
which happens for the normalised image and Hardswish outputs) times the positive part of the weight:

    R_i = sum_j  a_i * w+_ij / z_j * R_j,    z_j = sum_i a_i * w+_ij.

Element-wise layers (ReLU, Hardswish, the squeeze-excitation gate) pass relevance through, and max
pooling gives it to the winner. In matrix form ``R_in = a * (W+^T (R_out / z))``: the gradient of
``(W+ a) . s`` with respect to ``a`` for the constant ``s = R_out / z``, multiplied by ``a``, i.e.
a normalised gradient x input. The per-peak reference (``excitation_crm``) uses only autograd: one
modified forward whose values are the network's own activations but whose graph at each linear
layer is

    carrier_in  -> a + (carrier_in - a) * a     (gradient scaled by a; value a)
                -> h = conv(., W+)              (value z)
                -> y + (h - z) / z              (gradient divided by z; value y, the real output)

and element-wise layers are applied as ``f(x) + (carrier - x)`` (value f(x), gradient 1). Autograd
then returns exactly the relevance above at the input image (the gradient "is" the relevance).
The bilinear upsampling between the CRM and the peak is passed by its ordinary gradient; biases
take no relevance, as in excitation backprop. The relevance reaching the input, summed over RGB,
is the PRM.

``"gradient"``: the gradient of the peak value with respect to the input image, summed over RGB
(what WISE's code uses).

Both maps are clamped at 0 and normalised to sum 1 (a map that is all zero becomes uniform).

Batching (``peak_response_maps``, ``wsseg.methods.adjoint``): both backward passes are linear in the seed placed at the
peak, so all K peaks of an image take one forward and one backward of a batch of K one-hot seeds.
``torch.autograd.grad(..., is_grads_batched=True)`` can do this with vmap, but on the CPU it ran
slower than a loop (its convolution backward is split per seed), so the batched pass instead
records, during its forward, the adjoint of each layer (transposed convolution with the real or
positive folded weights, max-pool index scatter, activation derivatives, the squeeze-excitation
Jacobian) and applies it to the K seeds at once. ``peak_response_maps_naive`` runs the autograd
formulations above once per peak; the tests check that both agree.

Windows (where the math allows less than K full passes): a seed of a few CRM cells only reaches the
receptive field of those cells, so on a plain convolution stack (the ``small`` backbone) each peak's
adjoint runs inside its own window, followed layer by layer (``wsseg.methods.windowed_adjoint``). With the
57 px ``small`` backbone on a 160 px image that is 57 x 57 input pixels instead of 160 x 160. Other
networks (residual blocks, squeeze-excitation: receptive fields as large as the image) take the
full-size pass for all K seeds at once. What that costs, measured against a training step, is in
docs/benchmark.md ("PRM speed").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck
from torchvision.ops.misc import SqueezeExcitation

from wsseg.errors import BadInputError
from wsseg.methods.adjoint import Back, fold_batchnorm, folded_weight, shifted, walk_sequence
from wsseg.methods.windowed_adjoint import is_plain, walk, windowed_adjoint
from wsseg.models.classifier import PeakClassifier
from wsseg.models.peaks import Peak, PeakConfig, find_peaks, peak_stimulation, upsample_crm
from wsseg.models.receptive_field import _ELEMENTWISE, inverted_residual

_EPS = 1e-9


@dataclass(frozen=True)
class PRMConfig:
    """Settings of the peak response maps.

    method: a key of ``METHODS``: "excitation" (PRM's peak backpropagation) or "gradient" (WISE).
    class_threshold: classes whose score (the model's logit) is below it get no PRM; 0 is a
        probability of 0.5. None: every class.
    peak_threshold: peaks whose CRM value is below it get no PRM (on top of the PSL filter). None: no limit.
    max_peaks: at most this many peaks per image, the strongest. None: no limit.
    peaks: the peak search settings; None uses the model's own (``model.config.peaks``).
    relative_threshold, smooth: inference peak filters of ``wsseg.models.peaks.find_peaks`` (None: off).
    classes: only peaks of these class indices get PRMs (an image's tags, where they are known: a
        PRM costs a share of a backward pass, and 69 classes' peaks cost 69 times one class's). None:
        every class.
    """

    method: str = "excitation"
    class_threshold: float | None = 0.0
    peak_threshold: float | None = None
    max_peaks: int | None = None
    peaks: PeakConfig | None = None
    relative_threshold: float | None = None
    smooth: float | None = None
    classes: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise BadInputError("method", f"expected one of {sorted(METHODS)}, got {self.method!r}")
        if self.max_peaks is not None and self.max_peaks < 1:
            raise BadInputError("max_peaks", f"must be None or >= 1, got {self.max_peaks!r}")


@dataclass(frozen=True)
class PRMResult:
    """Peak response maps of one image.

    peaks: the K peaks, strongest first (``Peak`` gives input-pixel and upsampled-map coordinates).
    maps: float32 KxHxW, at input resolution, >= 0, each summing to 1; ``maps[k]`` belongs to ``peaks[k]``.
    class_scores: float32 C, the model's class scores (logits) for the image.
    crm: float32 Cxhxw, the raw class response maps.
    """

    peaks: tuple[Peak, ...]
    maps: np.ndarray
    class_scores: np.ndarray
    crm: np.ndarray


# ---------------------------------------------------------------- autograd formulations (per peak)


def _relay(carrier: torch.Tensor) -> torch.Tensor:
    """Value: the activation shifted to be >= 0; gradient: multiplied by that value."""
    a = shifted(carrier.detach())
    return a + (carrier - carrier.detach()) * a


def _node(value: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Value: ``value`` (the real layer output); gradient: divided by ``z`` (the value of h)."""
    z = h.detach()
    return value.detach() + (h - z) / z.clamp(min=_EPS)


def _through(value: torch.Tensor, carrier: torch.Tensor) -> torch.Tensor:
    """Value: ``value``; gradient: passed unchanged to ``carrier``."""
    return value.detach() + (carrier - carrier.detach())


def _conv_terms(
    conv: nn.Conv2d, bn: nn.BatchNorm2d | None, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(real output of conv+bn, its positive-weight term on the relayed input)."""
    value = conv(x.detach())
    if bn is not None:
        value = bn(value)
    weight = folded_weight(conv, bn)
    h = F.conv2d(_relay(x), weight.clamp(min=0), None, conv.stride, conv.padding, conv.dilation, conv.groups)
    return value, h


def _excite_sequence(modules: list[nn.Module], x: torch.Tensor) -> torch.Tensor:
    for m, bn in fold_batchnorm(modules):
        x = _node(*_conv_terms(m, bn, x)) if isinstance(m, nn.Conv2d) else _excite(m, x)
    return x


def _residual(
    value: torch.Tensor, h: torch.Tensor, shortcut: tuple[torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    """Linear node ``branch + shortcut``: relevance split between both in one normalisation."""
    return _node(value + shortcut[0], h + shortcut[1])


def _excite(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if isinstance(m, nn.Sequential):
        return _excite_sequence(list(m), x)
    if isinstance(m, BasicBlock | Bottleneck):
        convs = [(m.conv1, m.bn1), (m.conv2, m.bn2)] + (
            [(m.conv3, m.bn3)] if isinstance(m, Bottleneck) else []
        )
        out = x
        for conv, bn in convs[:-1]:
            node = _node(*_conv_terms(conv, bn, out))
            out = _through(F.relu(node), node)
        value, h = _conv_terms(*convs[-1], out)
        shortcut = (
            _conv_terms(m.downsample[0], m.downsample[1], x)
            if m.downsample is not None
            else (x.detach(), _relay(x))
        )
        summed = _residual(value, h, shortcut)
        return _through(F.relu(summed), summed)
    if (parts := inverted_residual(m)) is not None:
        branch, residual = parts
        if not residual:
            return _excite_sequence(branch, x)
        out = _excite_sequence(branch[:-1], x)
        project = branch[-1]
        value, h = _conv_terms(project[0], project[1], out)
        return _residual(value, h, (x.detach(), _relay(x)))
    if isinstance(m, (SqueezeExcitation, *_ELEMENTWISE)):
        return _through(m(x.detach().clone()), x)
    if isinstance(m, nn.MaxPool2d):
        return m(x)
    if isinstance(m, nn.Dropout | nn.Identity):
        return x
    raise NotImplementedError(f"peak backpropagation does not handle {type(m).__name__} layers")


def excitation_crm(model: PeakClassifier, image: torch.Tensor) -> torch.Tensor:
    """Raw CRMs (float 1xCxhxw, the model's values) whose gradient w.r.t. ``image`` is PRM's relevance."""
    return _excite_sequence(list(model.layers()), image)


def gradient_crm(model: PeakClassifier, image: torch.Tensor) -> torch.Tensor:
    """Raw CRMs (float 1xCxhxw) by the plain forward: their gradient is the input gradient."""
    return model.class_response_maps(image)


METHODS: dict[str, Callable[[PeakClassifier, torch.Tensor], torch.Tensor]] = {
    "excitation": excitation_crm,
    "gradient": gradient_crm,
}


# ---------------------------------------------------------------- peak response maps


def check_image(image: torch.Tensor) -> torch.Tensor:
    if image.ndim == 3:
        image = image[None]
    if image.ndim != 4 or image.shape[:2] != (1, 3) or not image.is_floating_point():
        raise BadInputError("image", f"expected one normalised float 3xHxW image, got {tuple(image.shape)}")
    return image.detach()


def _finish(relevance: torch.Tensor) -> torch.Tensor:
    """float KxHxW input relevance (summed over RGB) -> float32 KxHxW maps >= 0 summing to 1
    (a map with no positive relevance becomes uniform)."""
    maps = relevance.clamp(min=0).float()
    total = maps.sum(dim=(1, 2), keepdim=True)
    maps = maps / total.clamp(min=1e-30)
    empty = (total <= 0).flatten()
    if empty.any():
        maps[empty] = 1.0 / maps[0].numel()
    return maps


def _select_peaks(
    model: PeakClassifier, crm: torch.Tensor, image_size: tuple[int, int], cfg: PRMConfig
) -> tuple[tuple[Peak, ...], torch.Tensor, PeakConfig]:
    """Peaks of the float 1xCxhxw ``crm`` kept by ``cfg``, the class scores (float C) and the peak settings."""
    crm = crm.detach()
    if model.config.peak_stimulation:
        scores = peak_stimulation(crm, model.config.peaks)["logits"][0]
    else:
        scores = crm.mean(dim=(2, 3))[0]
    peak_cfg = cfg.peaks or model.config.peaks
    peaks = find_peaks(
        crm[0],
        peak_cfg,
        class_threshold=cfg.class_threshold,
        peak_threshold=cfg.peak_threshold,
        stride=model.stride,
        image_size=image_size,
        class_scores=scores,
        relative_threshold=cfg.relative_threshold,
        smooth=cfg.smooth,
    )
    if cfg.classes is not None:
        peaks = [p for p in peaks if p.class_index in cfg.classes]
    return tuple(peaks[: cfg.max_peaks] if cfg.max_peaks else peaks), scores, peak_cfg


def _result(
    peaks: tuple[Peak, ...], maps: torch.Tensor, scores: torch.Tensor, crm: torch.Tensor
) -> PRMResult:
    return PRMResult(
        peaks=peaks,
        maps=maps.detach().cpu().numpy(),
        class_scores=scores.float().cpu().numpy(),
        crm=crm.detach()[0].float().cpu().numpy(),
    )


class EvalMode:
    """Context manager: the model in eval mode inside, its previous mode restored after."""

    def __init__(self, model: nn.Module) -> None:
        self.model, self.was_training = model, model.training

    def __enter__(self) -> None:
        self.model.eval()

    def __exit__(self, *exc: object) -> None:
        self.model.train(self.was_training)


def peak_response_maps(model: PeakClassifier, image: torch.Tensor, cfg: PRMConfig | None = None) -> PRMResult:
    """PRMs of every kept peak of one normalised float 3xHxW (or 1x3xHxW) image.

    One forward, then the adjoint of a batch of K one-hot seeds (see the module docstring). The
    model runs in eval mode (BatchNorm running statistics) and is left in its previous mode.
    """
    cfg = cfg or PRMConfig()
    image = check_image(image).to(next(model.parameters()).device)  # the model's device (a GPU)
    with EvalMode(model), torch.no_grad():
        crm, adjoint = _forward(model, image, cfg.method == "excitation")
        peaks, scores, peak_cfg = _select_peaks(model, crm, tuple(image.shape[-2:]), cfg)
        if not peaks:
            return _result(peaks, image.new_zeros((0, *image.shape[-2:])), scores, crm)
        cells = [(p.class_index, p.map_y, p.map_x) for p in peaks]
        maps = _seeded_maps(crm, adjoint, cells, peak_cfg.upsample)
    return _result(peaks, maps, scores, crm)


def _forward(model: PeakClassifier, image: torch.Tensor, excite: bool) -> tuple[torch.Tensor, Back]:
    """The raw CRM (float 1xCxhxw) of the batch-1 ``image`` and the adjoint taking K seeds at the CRM
    (float KxCxhxw) to their K separate input maps summed over RGB (float KxHxW).

    A plain stack (the ``small`` backbone) runs each seed inside its own receptive field
    (``wsseg.methods.windowed_adjoint``); other networks take one full-size pass for the batch of seeds."""
    layers, image_hw = list(model.layers()), image.shape[-2:]
    if is_plain(layers):
        crm, steps = walk(layers, image, excite)
        return crm, lambda seeds: windowed_adjoint(steps, seeds, image_hw)
    crm, back = walk_sequence(layers, image, excite)
    return crm, lambda seeds: back(seeds).sum(dim=1)


#: Seeds per adjoint pass: memory then grows with the number of peaks only by their maps (K x H x W).
_SEED_CHUNK = 16


def _seeded_maps(
    crm: torch.Tensor, adjoint: Back, cells: list[tuple[int, int, int]], upsample: int
) -> torch.Tensor:
    """float32 KxHxW maps of one-hot seeds at K (class, map_y, map_x) cells of the upsampled CRM,
    ``_SEED_CHUNK`` seeds at a time."""
    out: torch.Tensor | None = None
    for start in range(0, len(cells), _SEED_CHUNK):
        chunk = torch.tensor(cells[start : start + _SEED_CHUNK])
        k = len(chunk)
        # the bilinear upsampling treats each class map alike: its adjoint on one channel, then put
        # in the seed's class
        seeds = crm.new_zeros((k, 1, *upsample_crm(crm[:, :1], upsample).shape[-2:]))
        seeds[torch.arange(k), 0, chunk[:, 1], chunk[:, 2]] = 1
        with torch.enable_grad():
            dummy = crm.new_zeros((k, 1, *crm.shape[2:]), requires_grad=True)
            (grad,) = torch.autograd.grad(upsample_crm(dummy, upsample), dummy, seeds)
        crm_seeds = crm.new_zeros((k, *crm.shape[1:]))
        crm_seeds[torch.arange(k), chunk[:, 0]] = grad[:, 0]
        maps = _finish(adjoint(crm_seeds))
        if out is None:
            out = maps.new_empty((len(cells), *maps.shape[1:]))
        out[start : start + k] = maps
    if out is None:
        raise ValueError("_seeded_maps needs at least one cell")
    return out


def response_maps_at(
    model: PeakClassifier,
    image: torch.Tensor,
    points: list[tuple[int, int, int]],
    cfg: PRMConfig | None = None,
) -> np.ndarray:
    """PRMs seeded at given points instead of found peaks (for example true instance centres).

    points: K (class index, y, x) in input pixels; each is moved to the nearest cell of the
    upsampled CRM. Returns float32 KxHxW maps, >= 0, each summing to 1 (as ``PRMResult.maps``).
    """
    cfg = cfg or PRMConfig()
    image = check_image(image)
    if not points:
        return np.zeros((0, *image.shape[-2:]), np.float32)
    with EvalMode(model), torch.no_grad():
        crm, adjoint = _forward(model, image, cfg.method == "excitation")
        upsample = (cfg.peaks or model.config.peaks).upsample
        size = upsample_crm(crm, upsample).shape[-2:]
        cells = [
            (
                int(c),
                min(max(round((y / model.stride + 0.5) * upsample - 0.5), 0), size[0] - 1),
                min(max(round((x / model.stride + 0.5) * upsample - 0.5), 0), size[1] - 1),
            )
            for c, y, x in points
        ]
        return _seeded_maps(crm, adjoint, cells, upsample).cpu().numpy()


def peak_response_maps_naive(
    model: PeakClassifier, image: torch.Tensor, cfg: PRMConfig | None = None
) -> PRMResult:
    """Same result as ``peak_response_maps`` by the autograd formulations, one backward pass per peak."""
    cfg = cfg or PRMConfig()
    image = check_image(image).clone().requires_grad_(True)
    with EvalMode(model), torch.enable_grad():
        crm = METHODS[cfg.method](model, image)
        peaks, scores, peak_cfg = _select_peaks(model, crm, tuple(image.shape[-2:]), cfg)
        up = upsample_crm(crm, peak_cfg.upsample)[0]
        maps = [
            _finish(
                torch.autograd.grad(up[p.class_index, p.map_y, p.map_x], image, retain_graph=True)[0].sum(
                    dim=1
                )
            )
            for p in peaks
        ]
    stacked = torch.cat(maps) if maps else image.new_zeros((0, *image.shape[-2:]))
    return _result(peaks, stacked, scores, crm)
