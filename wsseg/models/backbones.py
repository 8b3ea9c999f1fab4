"""Backbones: an image batch in, one feature map out.

Every backbone is an ``nn.Module`` with

- ``body``: an ``nn.Sequential`` holding all its layers in order, so that other code (the peak
  backpropagation of ``wsseg.methods.prm``) can walk them without hooks;
- ``out_channels``: channels of the feature map;
- ``stride``: output stride (input pixels per feature-map cell along each axis).

``forward(images: float32 Bx3xHxW, normalised with ``wsseg.models.classifier.normalize``)``
returns ``float32 B x out_channels x ceil(H/stride) x ceil(W/stride)``.

Weights (argument ``weights`` of every factory):

- ``None``: random initialisation;
- a torchvision weight name through its weights API: ``"imagenet"`` (the model's ``DEFAULT``: for
  ResNet-50 ``IMAGENET1K_V2``, 80.9 top-1 against V1's 76.1), ``"DEFAULT"``, ``"IMAGENET1K_V1"``... Only
  a file already in torch's cache is used (``weights_cache_path``): wsseg never downloads at run time,
  so a missing one is a clear error that names the file and the way out (a local file);
- a path to a local file: a state dict saved with ``torch.save`` (of the full torchvision model,
  for example ``torchvision.models.resnet18().state_dict()``; its classifier keys are ignored, or
  of the ``small`` backbone itself), loaded with ``torch.load(path, weights_only=True)``.

``norm_layer``: a pretrained torchvision start may freeze its BatchNorm (torchvision's
``FrozenBatchNorm2d``, as its detection models do: batch statistics of a few images per step would
overwrite ImageNet's).
"""

from __future__ import annotations

import pickle
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from torch import nn

from wsseg.errors import BadInputError

WeightsArg = str | Path | None


def _conv_bn_relu(
    c_in: int, c_out: int, stride: int = 1, dilation: int = 1, kernel: int = 3
) -> list[nn.Module]:
    return [
        nn.Conv2d(
            c_in,
            c_out,
            kernel,
            stride=stride,
            padding=dilation * (kernel // 2),
            dilation=dilation,
            bias=False,
        ),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


class SmallCNN(nn.Module):
    """From-scratch CNN for CPU work and tests: output stride 8, receptive field 57 px by default.

    A 5x5 stride-2 stem, then 3x3 conv + BatchNorm + ReLU layers: one at stride 2 and 4 each after a
    downsampling one, and one layer per entry of ``dilations`` at stride 8. The receptive field is
    41 + 16 * sum(dilations) pixels. The default, ``(1,)``, gives 57 px: just over the largest
    ``shapes`` object (50 px). A cell that cannot see beyond an object must find the class evidence
    where the object is, so the class maps peak on instances: on ``shapes`` (docs/benchmark.md, sweep
    on one project) peak precision went from 0.25 with a 121 px field (dilations 2 and 3) to 0.55 at
    57 px with the same schedule, and to 0.90 with three times the epochs (121 px: 0.41). The stem goes
    straight to stride 2 because full-resolution layers cost most on a CPU. With ``width=32``: 96
    output channels, about 0.2 M parameters.
    """

    stride = 8

    def __init__(self, width: int = 32, dilations: tuple[int, ...] = (1,)) -> None:
        super().__init__()
        if width < 1:
            raise BadInputError("width", f"must be a positive integer, got {width}")
        if any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in dilations):
            raise BadInputError("dilations", f"expected positive integers, got {dilations!r}")
        w1, w2, w3 = width, 2 * width, 3 * width
        layers = [
            *_conv_bn_relu(3, w1, stride=2, kernel=5),
            *_conv_bn_relu(w1, w1, stride=2),
            *_conv_bn_relu(w1, w2),
            *_conv_bn_relu(w2, w2, stride=2),
            *_conv_bn_relu(w2, w3),
            *(m for d in dilations for m in _conv_bn_relu(w3, w3, dilation=d)),
        ]
        self.body = nn.Sequential(*layers)
        self.out_channels = w3
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)


class TorchvisionBackbone(nn.Module):
    """A torchvision network cut before its classifier; ``body`` keeps torchvision's layer names."""

    def __init__(self, body: nn.Sequential, out_channels: int, stride: int) -> None:
        super().__init__()
        self.body = body
        self.out_channels = out_channels
        self.stride = stride

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise BadInputError(str(path), "weights file not found (expected a state dict saved with torch.save)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt or non-tensor file
        raise BadInputError(str(path), f"cannot be read as a PyTorch weights file ({exc})") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BadInputError(str(path), "expected a state dict (a mapping from parameter names to tensors)")
    return state


def _load_weights_file(model: nn.Module, path: Path, ignore_prefixes: tuple[str, ...] = ()) -> None:
    """Copy a state dict file into ``model``; keys starting with ``ignore_prefixes`` may be absent."""
    state = read_state_dict(path)
    own = model.state_dict()
    needed = [k for k in own if not k.startswith(ignore_prefixes)]
    # BatchNorm's step counters are no weights: files converted from other frameworks lack them
    missing = [k for k in needed if k not in state and not k.endswith("num_batches_tracked")]
    wrong = [k for k in needed if k in state and state[k].shape != own[k].shape]
    if missing or wrong:
        details = []
        if missing:
            details.append(f"{len(missing)} missing keys (first: {missing[:3]})")
        if wrong:
            k = wrong[0]
            details.append(
                f"{len(wrong)} shape mismatches (first: {k} {tuple(state[k].shape)} != {tuple(own[k].shape)})"
            )
        raise BadInputError(
            str(path), f"weights do not fit this backbone ({type(model).__name__}): " + "; ".join(details)
        )
    model.load_state_dict({k: state[k] for k in needed if k in state}, strict=False)


def weights_cache_path(tv_weights: torchvision.models.WeightsEnum) -> Path:
    """Where torch's hub cache keeps the file of a torchvision weights entry."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(tv_weights.url).name


def resolve_weights(weights: WeightsArg, enum_cls: type) -> tuple[object | None, Path | None]:
    """(torchvision weights entry or None, local path or None) for a ``weights`` argument."""
    if weights is None:
        return None, None
    text = str(weights)
    names = [n for n in enum_cls.__members__ if n != "DEFAULT"]  # type: ignore[attr-defined]
    if isinstance(weights, str) and (text in ("imagenet", "DEFAULT") or text in names):
        entry = enum_cls["DEFAULT" if text == "imagenet" else text]  # type: ignore[index]
        cached = weights_cache_path(entry)
        if not cached.is_file():
            raise BadInputError(
                f"weights={text!r}",
                f"torchvision's {enum_cls.__name__}.{entry.name} is not in torch's cache ({cached}); wsseg "
                "never downloads weights: put that file there, or pass a local weights file",
            )
        return entry, None
    path = Path(weights)
    if isinstance(weights, str) and not path.exists() and path.suffix == "" and "/" not in text:
        raise BadInputError(
            f"weights={text!r}",
            f"neither a file nor one of torchvision's names for it (imagenet, DEFAULT, {', '.join(names)})",
        )
    return None, path


def _build_tv(
    name: str,
    builder: Callable[..., nn.Module],
    enum_cls: type,
    weights: WeightsArg,
    frozen_bn: bool = False,
    **kw,
) -> nn.Module:
    """A torchvision model with ``weights`` (see the module docstring); ``frozen_bn``: its BatchNorm
    layers are ``FrozenBatchNorm2d`` (statistics and affine terms fixed)."""
    tv_weights, path = resolve_weights(weights, enum_cls)
    if frozen_bn:
        kw["norm_layer"] = torchvision.ops.misc.FrozenBatchNorm2d
    try:
        model = builder(weights=tv_weights, **kw)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:  # a cached file unread
        raise BadInputError(
            f"weights={weights!r}", f"could not load torchvision's weights for {name} ({exc})"
        ) from exc
    if path is not None:
        _load_weights_file(model, path, ignore_prefixes=("fc.", "classifier."))
    return model


def _dilate_basic_layer(layer: nn.Sequential, dilation_in: int, dilation: int) -> None:
    """Turn a stride-2 ResNet BasicBlock stage into a stride-1 stage with dilated 3x3 convs.

    Same scheme as torchvision's ``replace_stride_with_dilation`` for Bottleneck (which its
    BasicBlock refuses): the first block keeps the previous dilation on its first conv, every
    other 3x3 conv of the stage uses ``dilation``.
    """
    for i, block in enumerate(layer):
        for conv, d in ((block.conv1, dilation_in if i == 0 else dilation), (block.conv2, dilation)):
            conv.stride, conv.dilation, conv.padding = (1, 1), (d, d), (d, d)
        if block.downsample is not None:
            block.downsample[0].stride = (1, 1)


_RESNET_LAYERS = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


def resnet18(weights: WeightsArg = None) -> TorchvisionBackbone:
    """torchvision ResNet-18 without pooling/fc, output stride 8 (layer3/4 dilated 2/4), 512 channels."""
    model = _build_tv("resnet18", torchvision.models.resnet18, torchvision.models.ResNet18_Weights, weights)
    _dilate_basic_layer(model.layer3, 1, 2)
    _dilate_basic_layer(model.layer4, 2, 4)
    body = nn.Sequential(OrderedDict((n, getattr(model, n)) for n in _RESNET_LAYERS))
    return TorchvisionBackbone(body, out_channels=512, stride=8)


def resnet50(weights: WeightsArg = None) -> TorchvisionBackbone:
    """torchvision ResNet-50 without pooling/fc, output stride 8, 2048 channels.

    Built with ``replace_stride_with_dilation=[False, True, True]``: layer3 and layer4 keep stride 1
    and use dilation 2 and 4 instead, so the ImageNet weights still apply.
    """
    model = _build_tv(
        "resnet50",
        torchvision.models.resnet50,
        torchvision.models.ResNet50_Weights,
        weights,
        replace_stride_with_dilation=[False, True, True],
    )
    body = nn.Sequential(OrderedDict((n, getattr(model, n)) for n in _RESNET_LAYERS))
    return TorchvisionBackbone(body, out_channels=2048, stride=8)


def mobilenet_v3(weights: WeightsArg = None) -> TorchvisionBackbone:
    """torchvision MobileNetV3-Large features, output stride 16 (last stage dilated), 960 channels."""
    model = _build_tv(
        "mobilenet_v3",
        torchvision.models.mobilenet_v3_large,
        torchvision.models.MobileNet_V3_Large_Weights,
        weights,
        dilated=True,
    )
    body = nn.Sequential(OrderedDict([("features", model.features)]))
    return TorchvisionBackbone(body, out_channels=960, stride=16)


def dilate_mobilenet_v2(features: nn.Sequential, first: int = 14) -> None:
    """MobileNetV2's last stride-2 stage at stride 1 (``features[first]`` on), its 3x3 depthwise convs
    dilated by 2 instead, so the ImageNet weights still apply: output stride 16, not 32."""
    for block in features[first:]:
        for conv in block.modules():
            if isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3) and conv.groups > 1:
                conv.stride, conv.dilation, conv.padding = (1, 1), (2, 2), (2, 2)


def mobilenet_v2(weights: WeightsArg = None) -> TorchvisionBackbone:
    """torchvision MobileNetV2 features, output stride 16 (last stage dilated), 1280 channels; takes the
    shared ImageNet-derived file (``features.*`` keys) as a weights file."""
    model = _build_tv(
        "mobilenet_v2", torchvision.models.mobilenet_v2, torchvision.models.MobileNet_V2_Weights, weights
    )
    dilate_mobilenet_v2(model.features)
    body = nn.Sequential(OrderedDict([("features", model.features)]))
    return TorchvisionBackbone(body, out_channels=1280, stride=16)


def small(weights: WeightsArg = None, width: int = 32, dilations: tuple[int, ...] = (1,)) -> SmallCNN:
    """The from-scratch ``SmallCNN``; ``weights`` may be None or a path to its own state dict."""
    model = SmallCNN(width=width, dilations=tuple(dilations))
    if weights is not None:
        if isinstance(weights, str) and weights == "imagenet":
            raise BadInputError(
                "weights='imagenet'", "the small backbone has no ImageNet weights; use None or a file"
            )
        _load_weights_file(model, Path(weights))
    return model


BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "small": small,
    "resnet18": resnet18,
    "resnet50": resnet50,
    "mobilenet_v3": mobilenet_v3,
    "mobilenet_v2": mobilenet_v2,
}


#: The torchvision weights enum of each backbone that has one.
WEIGHTS_ENUMS: dict[str, type] = {
    "resnet18": torchvision.models.ResNet18_Weights,
    "resnet50": torchvision.models.ResNet50_Weights,
    "mobilenet_v3": torchvision.models.MobileNet_V3_Large_Weights,
    "mobilenet_v2": torchvision.models.MobileNet_V2_Weights,
    # Mask R-CNN only (``wsseg.models.maskrcnn.COCO_DETECTOR``): the whole detector's COCO weights.
    "maskrcnn_resnet50_fpn_v2": torchvision.models.detection.MaskRCNN_ResNet50_FPN_V2_Weights,
}


def cached_weight_names(backbone: str) -> list[str]:
    """The torchvision weight names of ``backbone`` whose file is in torch's cache (usable offline)."""
    enum_cls = WEIGHTS_ENUMS.get(backbone)
    if enum_cls is None:
        return []
    return [n for n, w in enum_cls.__members__.items() if n != "DEFAULT" and weights_cache_path(w).is_file()]


def build_backbone(name: str, weights: WeightsArg = None, **kwargs: object) -> nn.Module:
    """Build ``BACKBONES[name](weights, **kwargs)``; unknown names raise ``BadInputError``."""
    if name not in BACKBONES:
        raise BadInputError(f"backbone={name!r}", f"unknown backbone; expected one of {sorted(BACKBONES)}")
    return BACKBONES[name](weights, **kwargs)
