"""Mask R-CNN (torchvision's ``MaskRCNN``) set up to train from scratch on small images on a CPU.

The default backbone is MobileNetV3-Large with **trainable** BatchNorm whose stride 8, 16 and 32 maps
feed a 128-channel FPN (plus FPN's max-pooled stride-64 level). torchvision's own
``mobilenet_backbone`` freezes BatchNorm and takes two stride-32 maps: from scratch on the 18-50 px
objects of ``shapes`` it does not learn; this layout does (issue 5). ResNet-50-FPN is the other
option, built the same way (stride 8/16/32 maps, trainable BatchNorm). ``small`` is the from-scratch
``SmallCNN`` of the classifier with two more stride-2 layers (strides 8/16/32 from its own layers):
with thin heads it makes the app's demo checkpoint (``wsseg.demo.models``), well under 1 M parameters.
``maskrcnn_resnet50_fpn_v2`` is torchvision's whole detector of that name, started from its COCO weights
(backbone, FPN, RPN and heads; only the two class-specific predictors are new): the start for natural
photos when the file is at hand.

Contract (torchvision's): ``model(images, targets)`` in training returns a dict of losses;
``model(images)`` in eval mode returns per image ``boxes`` (float32 Nx4, xyxy pixels), ``labels``
(int64 N, 1..K; 0 is background), ``scores`` (float32 N in [0, 1]) and ``masks`` (float32 Nx1xHxW
probabilities). Images are float32 3xHxW in [0, 1]; the model normalises them itself.
``predict`` turns that into ``wsseg.methods.mask_map.Instances`` with 0-based labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torchvision
from torch import nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from wsseg.errors import BadInputError
from wsseg.models.backbones import (
    SmallCNN,
    _build_tv,
    _conv_bn_relu,
    read_state_dict,
    resolve_weights,
    weights_cache_path,
)
from wsseg.structures import Instances

COCO_DETECTOR = "maskrcnn_resnet50_fpn_v2"
"""The backbone name of torchvision's COCO-trained detector (``MaskRCNN_ResNet50_FPN_V2_Weights``)."""
BACKBONES = ("mobilenet_v3", "mobilenet_v2", "resnet50", "small", COCO_DETECTOR)


@dataclass(frozen=True)
class MaskRCNNConfig:
    """Everything that shapes the model. Defaults: 160 px images with 18-50 px objects, on a CPU.

    num_classes: object classes, background excluded. backbone: ``mobilenet_v3``, ``mobilenet_v2``,
        ``resnet50``, ``small`` (a from-scratch CNN of ``small_width`` base channels; it has no ImageNet
        weights) or ``maskrcnn_resnet50_fpn_v2`` (torchvision's whole COCO detector: its own FPN, anchors
        and heads, so ``small_width``, ``fpn_channels``, ``anchor_sizes``, ``aspect_ratios``, the head
        sizes and ``roi_sampling_ratio`` do not apply to it).
    weights: None (from scratch), a torchvision weight name (``imagenet``, ``DEFAULT``, ``IMAGENET1K_V1``
        ...; ``COCO_V1`` for the COCO detector: the file must be in torch's cache, see
        ``wsseg.models.backbones``) or a path to a state dict of the full torchvision model (``mobilenet_v2``:
        the shared ``features.*`` file; the COCO detector: its whole state dict).
    frozen_bn: BatchNorm of a torchvision backbone frozen (``FrozenBatchNorm2d``); None: frozen when it
        starts from weights, as torchvision's detection models do, trainable from scratch.
    image_size: the shorter side images are resized to (torchvision's ``min_size``); the longer side
        is capped at twice that. Predictions come back at the input image's own size.
    anchor_sizes: one tuple per FPN level (strides 8, 16, 32, 64), in pixels of the resized image.
    rpn_*/roi_*: proposals kept before/after NMS, and anchors/RoIs sampled per image for the losses
        (torchvision's defaults are sized for 800 px COCO images: 2000/2000, 256, 512).
    roi_sampling_ratio: bilinear samples per RoIAlign bin along each axis (torchvision: 2). On a CPU the
        backward pass of RoIAlign is the costliest single operation of a step; at 1 it costs a quarter.
    box_head_size: hidden width of the box head's two MLP layers (torchvision: 1024).
    mask_head_convs, mask_head_channels: the mask head's 3x3 conv layers at 14x14 (torchvision: 4 of 256);
        on a CPU the mask head costs more than the backbone, so it is thinner here.
    detections_per_image, score_threshold: what inference keeps (COCO mAP wants a low threshold).
    """

    num_classes: int
    backbone: str = "mobilenet_v3"
    weights: str | None = None
    frozen_bn: bool | None = None
    small_width: int = 32
    fpn_channels: int = 128
    image_size: int = 160
    anchor_sizes: tuple[tuple[int, ...], ...] = ((16,), (32,), (64,), (128,))
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    rpn_pre_nms_train: int = 600
    rpn_post_nms_train: int = 300
    rpn_pre_nms_test: int = 300
    rpn_post_nms_test: int = 100
    rpn_batch_per_image: int = 128
    roi_batch_per_image: int = 64
    roi_sampling_ratio: int = 2
    box_head_size: int = 512
    mask_head_convs: int = 2
    mask_head_channels: int = 128
    detections_per_image: int = 50
    score_threshold: float = 0.05

    def __post_init__(self) -> None:
        if self.num_classes < 1:
            raise BadInputError("num_classes", f"must be at least 1, got {self.num_classes}")
        if self.backbone not in BACKBONES:
            raise BadInputError(f"backbone={self.backbone!r}", f"expected one of {', '.join(BACKBONES)}")
        if self.backbone == "small" and self.weights is not None:
            raise BadInputError(f"weights={self.weights!r}", "the small backbone trains from scratch only")
        if self.image_size < 32:
            raise BadInputError("image_size", f"must be at least 32 pixels, got {self.image_size}")
        if self.roi_sampling_ratio < 1:
            raise BadInputError("roi_sampling_ratio", f"must be at least 1, got {self.roi_sampling_ratio}")
        if self.mask_head_convs < 1:
            raise BadInputError("mask_head_convs", f"must be at least 1, got {self.mask_head_convs}")
        if len(self.anchor_sizes) != 4:
            raise BadInputError(
                "anchor_sizes", f"expected one tuple per FPN level (4), got {len(self.anchor_sizes)}"
            )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> MaskRCNNConfig:
        data = dict(data)
        data["anchor_sizes"] = tuple(tuple(int(v) for v in level) for level in data["anchor_sizes"])
        data["aspect_ratios"] = tuple(float(v) for v in data["aspect_ratios"])
        return MaskRCNNConfig(**data)


#: The MobileNet backbones: torchvision builder and weights enum.
MOBILENETS = {
    "mobilenet_v3": (torchvision.models.mobilenet_v3_large, torchvision.models.MobileNet_V3_Large_Weights),
    "mobilenet_v2": (torchvision.models.mobilenet_v2, torchvision.models.MobileNet_V2_Weights),
}


def _stride_outputs(features: nn.Sequential, strides: Sequence[int]) -> tuple[dict[str, str], list[int]]:
    """For a sequential feature extractor: the last layer at each output stride, and its channels."""
    x = torch.zeros(1, 3, 64, 64)
    last: dict[int, tuple[str, int]] = {}
    with torch.no_grad():
        for name, layer in features.named_children():
            x = layer(x)
            last[64 // x.shape[-1]] = (name, x.shape[1])
    return {last[s][0]: str(k) for k, s in enumerate(strides)}, [last[s][1] for s in strides]


def build_backbone(config: MaskRCNNConfig) -> BackboneWithFPN:
    """The backbone's stride 8/16/32 maps through an FPN of ``fpn_channels`` (levels '0'..'2', 'pool')."""
    strides = (8, 16, 32)
    frozen = config.frozen_bn if config.frozen_bn is not None else config.weights is not None
    body: nn.Module
    if config.backbone == "small":
        w = config.small_width
        body = nn.Sequential(
            *SmallCNN(width=w).body,
            *_conv_bn_relu(3 * w, 4 * w, stride=2),
            *_conv_bn_relu(4 * w, 4 * w, stride=2),
        )
        return_layers, channels = _stride_outputs(body, strides)
    elif config.backbone in MOBILENETS:
        builder, enum_cls = MOBILENETS[config.backbone]
        net = _build_tv(config.backbone, builder, enum_cls, config.weights, frozen)
        body = net.features
        return_layers, channels = _stride_outputs(net.features, strides)
    else:
        net = _build_tv(
            "resnet50",
            torchvision.models.resnet50,
            torchvision.models.ResNet50_Weights,
            config.weights,
            frozen,
        )
        body = net
        return_layers = {"layer2": "0", "layer3": "1", "layer4": "2"}
        channels = [512, 1024, 2048]
    return BackboneWithFPN(
        body, return_layers, channels, config.fpn_channels, extra_blocks=LastLevelMaxPool()
    )


def build_maskrcnn(config: MaskRCNNConfig) -> MaskRCNN:
    """torchvision ``MaskRCNN`` with the backbone, anchors, heads and sample counts of ``config``."""
    if config.backbone == COCO_DETECTOR:
        return coco_detector(config)
    backbone = build_backbone(config)
    c = config.fpn_channels
    levels = ["0", "1", "2"]
    anchors = AnchorGenerator(config.anchor_sizes, (config.aspect_ratios,) * len(config.anchor_sizes))
    mask_layers = (config.mask_head_channels,) * config.mask_head_convs
    return MaskRCNN(
        backbone,
        min_size=config.image_size,
        max_size=2 * config.image_size,
        rpn_anchor_generator=anchors,
        rpn_pre_nms_top_n_train=config.rpn_pre_nms_train,
        rpn_post_nms_top_n_train=config.rpn_post_nms_train,
        rpn_pre_nms_top_n_test=config.rpn_pre_nms_test,
        rpn_post_nms_top_n_test=config.rpn_post_nms_test,
        rpn_batch_size_per_image=config.rpn_batch_per_image,
        box_roi_pool=MultiScaleRoIAlign(levels, output_size=7, sampling_ratio=config.roi_sampling_ratio),
        box_head=TwoMLPHead(c * 7 * 7, config.box_head_size),
        box_predictor=FastRCNNPredictor(config.box_head_size, config.num_classes + 1),
        box_batch_size_per_image=config.roi_batch_per_image,
        box_detections_per_img=config.detections_per_image,
        box_score_thresh=config.score_threshold,
        mask_roi_pool=MultiScaleRoIAlign(levels, output_size=14, sampling_ratio=config.roi_sampling_ratio),
        mask_head=MaskRCNNHeads(c, mask_layers, 1),
        mask_predictor=MaskRCNNPredictor(mask_layers[-1], c, config.num_classes + 1),
    )


def coco_detector(config: MaskRCNNConfig) -> MaskRCNN:
    """torchvision's ``maskrcnn_resnet50_fpn_v2`` with ``config.weights`` (its COCO weights by name from
    torch's cache, or a file of its state dict), then new box and mask predictors for
    ``config.num_classes``; the backbone's BatchNorm frozen unless ``frozen_bn`` is False. Image size,
    proposal and sample counts and inference thresholds come from ``config``."""
    enum_cls = torchvision.models.detection.MaskRCNN_ResNet50_FPN_V2_Weights
    entry, path = resolve_weights(config.weights, enum_cls)
    model = torchvision.models.detection.maskrcnn_resnet50_fpn_v2(
        weights=None,
        weights_backbone=None,
        num_classes=91,  # COCO's ids, background included: the layout of its weights
        min_size=config.image_size,
        max_size=2 * config.image_size,
        rpn_pre_nms_top_n_train=config.rpn_pre_nms_train,
        rpn_post_nms_top_n_train=config.rpn_post_nms_train,
        rpn_pre_nms_top_n_test=config.rpn_pre_nms_test,
        rpn_post_nms_top_n_test=config.rpn_post_nms_test,
        rpn_batch_size_per_image=config.rpn_batch_per_image,
        box_batch_size_per_image=config.roi_batch_per_image,
        box_detections_per_img=config.detections_per_image,
        box_score_thresh=config.score_threshold,
    )
    source = weights_cache_path(entry) if entry is not None else path
    if source is not None:
        state = read_state_dict(source)
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            first = str(exc).splitlines()[0:2]
            raise BadInputError(
                str(source), f"is not a state dict of torchvision's {COCO_DETECTOR} ({' '.join(first)})"
            ) from exc
    if config.frozen_bn if config.frozen_bn is not None else source is not None:
        freeze_batchnorm(model.backbone.body)
    heads = model.roi_heads
    heads.box_predictor = FastRCNNPredictor(heads.box_predictor.cls_score.in_features, config.num_classes + 1)
    mask_in = heads.mask_predictor.conv5_mask.in_channels
    heads.mask_predictor = MaskRCNNPredictor(mask_in, mask_in, config.num_classes + 1)
    return model


def freeze_batchnorm(module: nn.Module) -> int:
    """Replace every ``BatchNorm2d`` under ``module`` by a ``FrozenBatchNorm2d`` holding its statistics
    and affine terms; return how many."""
    count = 0
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = torchvision.ops.misc.FrozenBatchNorm2d(child.num_features, eps=child.eps)
            for key in ("weight", "bias", "running_mean", "running_var"):
                getattr(frozen, key).copy_(getattr(child, key).detach())
            setattr(module, name, frozen)
            count += 1
        else:
            count += freeze_batchnorm(child)
    return count


def predict(model: MaskRCNN, images: Sequence[np.ndarray], mask_threshold: float = 0.5) -> list[Instances]:
    """Instances of each HxWx3 uint8 image: masks HxW bool (probability >= ``mask_threshold``), labels
    0-based class indices, scores in [0, 1], best first. Runs in eval mode under inference_mode."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    tensors = [to_model_input(image).to(device) for image in images]
    with torch.inference_mode():
        outputs = model(tensors)
    model.train(was_training)
    result = []
    for image, out in zip(images, outputs, strict=True):
        masks = out["masks"][:, 0].cpu().numpy() >= mask_threshold
        labels = out["labels"].cpu().numpy().astype(np.int64) - 1
        scores = out["scores"].cpu().numpy().astype(np.float64)
        if len(labels) == 0:
            result.append(Instances.empty(*image.shape[:2]))
        else:
            result.append(Instances(masks, labels, scores))
    return result


def to_model_input(image: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> 3xHxW float32 in [0, 1] (Mask R-CNN normalises internally)."""
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise BadInputError("image", f"expected an HxWx3 uint8 array, got {image.shape} {image.dtype}")
    return torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1).div_(255.0)
