"""Class activation maps of every common method, from one library, beside PRM's class response map.

The gradient and perturbation methods come from ``grad-cam`` (pytorch-grad-cam, pinned in
requirements.txt), not rewritten here. It was chosen over TorchCAM after trying both with this torch:
both run, but only grad-cam has Eigen-CAM and HiRes-CAM, and its maps are computed from one forward
(and one backward) of a plain ``nn.Module`` with hooks on the chosen layer, which fits both the
project's classifiers and torchvision's. Each method's map is what the library returns: the method's
weighted sum of the layer's activations, negatives set to 0, divided by its own range (min-max, so
every map spans [0, 1]) and resized (bilinear) to the image.

``crm`` is the PRM classifier's own class response map (CAM with its 1x1 head): the class's map,
negatives set to 0, upsampled (bilinear) to the image and divided by its maximum (a map with no
positive response stays 0). Its peak response maps stay ``wsseg.methods.prm``'s.

Eigen-CAM has no class: it is the first principal component of the layer's activations, whose sign
the SVD leaves open, so on some images it lights the background (as its paper's method does).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_grad_cam import (
    EigenCAM,
    GradCAM,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from wsseg.errors import BadInputError
from wsseg.models.cam_models import CamModel
from wsseg.models.peaks import Peak, PeakConfig, find_peaks

#: The library's methods by the name wsseg uses for them.
LIBRARY_METHODS: dict[str, type] = {
    "gradcam": GradCAM,
    "gradcam++": GradCAMPlusPlus,
    "xgradcam": XGradCAM,
    "scorecam": ScoreCAM,
    "layercam": LayerCAM,
    "eigencam": EigenCAM,
    "hirescam": HiResCAM,
}

#: Every method, PRM's class response map first.
METHODS: tuple[str, ...] = ("crm", *LIBRARY_METHODS)

#: How each method is named on the page and in reports.
LABELS: dict[str, str] = {
    "crm": "Class response map (PRM)",
    "gradcam": "Grad-CAM",
    "gradcam++": "Grad-CAM++",
    "xgradcam": "XGrad-CAM",
    "scorecam": "Score-CAM",
    "layercam": "LayerCAM",
    "eigencam": "Eigen-CAM",
    "hirescam": "HiRes-CAM",
}

#: Score-CAM's forward passes per batch (one masked copy of the image per channel of the layer).
SCORECAM_BATCH = 32


def parse_methods(text: str, model: CamModel | None = None) -> list[str]:
    """'gradcam,scorecam' -> the method names, checked; 'all' -> every method the model offers."""
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    if names == ["all"]:
        names = list(METHODS)
        return names if model is None or model.crm is not None else names[1:]
    unknown = [n for n in names if n not in METHODS]
    if not names or unknown:
        raise BadInputError(
            "--methods", f"expected a comma-separated list of {', '.join(METHODS)} (or all); got {text!r}"
        )
    return names


def available(model: CamModel) -> list[str]:
    """The methods ``model`` can show: all of the library's, and ``crm`` for a PRM classifier."""
    return [m for m in METHODS if m != "crm" or model.crm is not None]


def _check(model: CamModel, image: torch.Tensor, class_index: int, method: str) -> None:
    if image.ndim != 4 or image.shape[:2] != (1, 3):
        raise BadInputError("image", f"expected one normalised 1x3xHxW image, got shape {tuple(image.shape)}")
    if not 0 <= class_index < len(model.classes):
        raise BadInputError("class", f"index {class_index} is not one of the {len(model.classes)} classes")
    if method not in available(model):
        raise BadInputError(f"method={method!r}", f"expected one of {', '.join(available(model))}")


def crm_map(model: CamModel, image: torch.Tensor, class_index: int) -> np.ndarray:
    """The PRM classifier's class response map of ``class_index`` as float32 HxW in [0, 1]."""
    assert model.crm is not None
    with torch.inference_mode():
        crm = model.crm(image)[:, class_index : class_index + 1].clamp(min=0)
        up = F.interpolate(crm.float(), size=image.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    top = float(up.max())
    return (up / top if top > 0 else up).numpy().astype(np.float32)


def class_map(
    model: CamModel, image: torch.Tensor, class_index: int, method: str, layer: str | None = None
) -> np.ndarray:
    """The map of ``method`` for class ``class_index`` on ``image`` (normalised 1x3xHxW), read at the
    target ``layer`` (None: the model's default; ignored by ``crm``): float32 HxW in [0, 1]."""
    _check(model, image, class_index, method)
    if method == "crm":
        return crm_map(model, image, class_index)
    cam = LIBRARY_METHODS[method](model=model.network, target_layers=[model.layer(layer)])
    cam.batch_size = SCORECAM_BATCH
    try:
        # Score-CAM draws a progress bar on stderr for each image; the page and the CLI have their own
        with contextlib.redirect_stderr(io.StringIO()), torch.enable_grad():
            out = cam(input_tensor=image, targets=[ClassifierOutputTarget(class_index)])
    finally:
        cam.activations_and_grads.release()
    result = np.nan_to_num(np.asarray(out[0], dtype=np.float32))
    if result.shape != tuple(image.shape[-2:]):
        raise BadInputError(method, f"returned a {result.shape} map for a {tuple(image.shape[-2:])} image")
    return result


def map_peaks(
    maps: np.ndarray,
    classes: list[int],
    stride: int,
    peaks: PeakConfig,
    relative_threshold: float | None,
    smooth: float | None,
) -> list[Peak]:
    """Peaks of float KxHxW maps in [0, 1] (one per entry of ``classes``), found as the class response
    maps' are (``find_peaks``) on the classifier's grid: each map is averaged over ``stride`` x
    ``stride`` cells first, so the window, filter, threshold and smoothing mean the same for every
    method. A map with no positive value has no peak. Peaks carry the class of their map, strongest
    first."""
    if maps.ndim != 3 or len(maps) != len(classes):
        raise BadInputError(
            "maps", f"expected one HxW map per class ({len(classes)}), got shape {maps.shape}"
        )
    h, w = maps.shape[1:]
    grid = (max(1, -(-h // stride)), max(1, -(-w // stride)))
    pooled = F.adaptive_avg_pool2d(torch.from_numpy(np.ascontiguousarray(maps, np.float32))[None], grid)[0]
    found = []
    for k, c in enumerate(classes):
        if float(pooled[k].max()) <= 0:
            continue
        for p in find_peaks(
            pooled[k : k + 1],
            peaks,
            peak_threshold=0.0,
            relative_threshold=relative_threshold,
            smooth=smooth,
            stride=stride,
            image_size=(h, w),
        ):
            found.append(dataclasses.replace(p, class_index=c))
    return sorted(found, key=lambda p: -p.value)
