"""A classifier as the CAM methods see it: images in, one score per class out, and the layers a method
may read.

Two kinds of classifier are offered:

- a project's PRM classifier (``PeakClassifier``): its class scores (the peak stimulation layer's, or
  global average pooling) and, besides the gradient methods, its own class response maps;
- a torchvision ImageNet classifier (``resnet18``, ``resnet50``, ``mobilenet_v2``, ``mobilenet_v3``) from
  a torchvision weight name already in torch's cache or a local weights file holding the whole network,
  classifier head included, with ImageNet's class names. wsseg never downloads: a name whose file is
  not in the cache is a clear error, as for the backbones (``wsseg.models.backbones``).

Inputs are normalised as everywhere (``wsseg.models.normalise``: ImageNet's mean and std), which is
also what torchvision's ImageNet models expect.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn

from wsseg.errors import BadInputError
from wsseg.models.backbones import WEIGHTS_ENUMS, read_state_dict, resolve_weights
from wsseg.models.classifier import PeakClassifier


@dataclass(frozen=True)
class CamModel:
    """One classifier for the CAM methods.

    network: ``nn.Module`` in eval mode, float Bx3xHxW normalised images -> float BxC class scores.
    classes: the C class names. layers: the target layers offered, name -> module, shallow to deep;
    default_layer: the one a method reads unless told (the feature map the classifier's head reads).
    stride: input pixels per cell of the default layer's map (the grid the peaks are found on).
    crm: for a PRM classifier, images -> float BxCxhxw class response maps (its own CAM); else None.
    source: what it is, in words.
    """

    network: nn.Module
    classes: list[str]
    layers: dict[str, nn.Module]
    default_layer: str
    stride: int
    crm: Callable[[torch.Tensor], torch.Tensor] | None
    source: str

    def layer(self, name: str | None) -> nn.Module:
        """The target layer ``name`` (None: the default); an unknown name is a ``BadInputError``."""
        name = name or self.default_layer
        if name not in self.layers:
            raise BadInputError(
                f"layer={name!r}", f"not a layer of this classifier; expected one of {list(self.layers)}"
            )
        return self.layers[name]


class _Scores(nn.Module):
    """A ``PeakClassifier`` whose forward returns only its class scores (what the CAM library calls)."""

    def __init__(self, model: PeakClassifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)["logits"]


def _children(prefix: str, module: nn.Module) -> dict[str, nn.Module]:
    return {f"{prefix}.{name}": child for name, child in module.named_children()}


def _peak_classifier_layers(model: PeakClassifier) -> dict[str, nn.Module]:
    """Block outputs of the backbone, shallow to deep: the ReLUs of the small CNN (each ends a conv +
    BatchNorm + ReLU), ResNet's stages, MobileNet's feature blocks."""
    body = model.backbone.body
    if model.config.backbone == "small":
        return {f"backbone.body.{n}": m for n, m in body.named_children() if isinstance(m, nn.ReLU)}
    if "features" in dict(body.named_children()):
        return _children("backbone.body.features", body.features)
    return {f"backbone.body.{n}": m for n, m in body.named_children() if n.startswith("layer")}


def peak_classifier_cams(model: PeakClassifier, classes: list[str], source: str) -> CamModel:
    """A project's trained PRM classifier (eval mode) as a ``CamModel``; its default layer is the last
    one of its backbone, the map its 1x1 head turns into class response maps."""
    if len(classes) != model.config.num_classes:
        raise BadInputError("classes", f"expected {model.config.num_classes} names, got {len(classes)}")
    model.eval()
    layers = _peak_classifier_layers(model)
    return CamModel(
        network=_Scores(model).eval(),
        classes=list(classes),
        layers=layers,
        default_layer=list(layers)[-1],
        stride=model.stride,
        crm=model.class_response_maps,
        source=source,
    )


#: torchvision ImageNet classifiers: builder and the stride of the last feature map.
TORCHVISION_CLASSIFIERS: dict[str, tuple[Callable[..., nn.Module], int]] = {
    "resnet18": (torchvision.models.resnet18, 32),
    "resnet50": (torchvision.models.resnet50, 32),
    "mobilenet_v2": (torchvision.models.mobilenet_v2, 32),
    "mobilenet_v3": (torchvision.models.mobilenet_v3_large, 32),
}


def _torchvision_layers(arch: str, model: nn.Module) -> dict[str, nn.Module]:
    if arch.startswith("resnet"):
        return {n: getattr(model, n) for n in ("layer1", "layer2", "layer3", "layer4")}
    return _children("features", model.features)


def imagenet_classes(arch: str) -> list[str]:
    """ImageNet's 1000 class names as torchvision's weights metadata gives them (no download)."""
    return list(WEIGHTS_ENUMS[arch].DEFAULT.meta["categories"])  # type: ignore[attr-defined]


def torchvision_cams(arch: str, weights: str | Path) -> CamModel:
    """A torchvision ImageNet classifier ``arch`` (a key of ``TORCHVISION_CLASSIFIERS``) with ``weights``:
    a torchvision weight name (``imagenet`` = ``DEFAULT``, ``IMAGENET1K_V1``...) whose file is in torch's
    cache, or a local file holding the whole classifier (a ``state_dict()`` of the torchvision model).
    A file without the classifier head is refused: its 1000 class scores would be random."""
    if arch not in TORCHVISION_CLASSIFIERS:
        raise BadInputError(f"arch={arch!r}", f"expected one of {sorted(TORCHVISION_CLASSIFIERS)}")
    builder, stride = TORCHVISION_CLASSIFIERS[arch]
    entry, path = resolve_weights(weights, WEIGHTS_ENUMS[arch])
    if entry is None and path is None:
        raise BadInputError("weights", "an ImageNet classifier needs weights: a torchvision name or a file")
    if entry is not None:
        try:
            model = builder(weights=entry)
        except (OSError, RuntimeError, EOFError) as exc:
            raise BadInputError(
                f"weights={weights!r}", f"could not load torchvision's weights ({exc})"
            ) from exc
        source = f"torchvision {arch} ({entry.name})"  # type: ignore[attr-defined]
    else:
        assert path is not None
        model = builder(weights=None)
        state = read_state_dict(path)
        own = model.state_dict()
        missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
        head = ("fc.", "classifier.")
        body_missing = [k for k in missing if not k.startswith(head)]
        if not body_missing and any(k.startswith(head) for k in missing):
            raise BadInputError(
                str(path),
                f"holds no classifier head for {arch} (no fc./classifier. weights): its class scores would be "
                "random. Use it as a backbone to train a project classifier (--weights of `wsseg "
                "train-classifier`), or give a file of the whole ImageNet classifier",
            )
        wrong = [k for k in own if k in state and state[k].shape != own[k].shape]
        if missing or wrong:
            raise BadInputError(
                str(path),
                f"does not fit torchvision's {arch}: {len(missing)} missing and {len(wrong)} mis-shaped keys "
                f"(first: {(missing + wrong)[0]})",
            )
        model.load_state_dict({k: state[k] for k in own if k in state}, strict=False)
        source = f"torchvision {arch} ({path.name})"
    model.eval()
    layers = _torchvision_layers(arch, model)
    return CamModel(
        network=model,
        classes=imagenet_classes(arch),
        layers=layers,
        default_layer=list(layers)[-1],
        stride=stride,
        crm=None,
        source=source,
    )
