"""Peak stimulation layer (PSL) of PRM, and peak finding for the later stages.

Training (``peak_stimulation``): the class response maps (CRMs) are upsampled by ``upsample``
(bilinear), the local maxima of each map in a ``window`` x ``window`` neighbourhood are found, those
below a per-image, per-class filter value are dropped, and the class score is the mean of the kept
peak values. The peak mask is computed without gradient and the score is a masked mean of the map,
so the gradient reaches the upsampled map only at the kept peaks (and the raw CRM only at the
bilinear support of those peaks, or exactly at the peaks when ``upsample == 1``).

Coordinates. The backbone has output stride ``s`` (8 for the ResNets and ``small``, 16 for
MobileNetV3). Every strided layer of our backbones has an odd kernel padded by half its size, so
output cell ``i`` of each is centred over input cell ``2i``: CRM cell ``i`` is centred on input pixel
``s*i`` (the centre of its receptive field; the last cells lie partly outside odd-sized images).
Upsampled cell ``u`` (factor ``f``, bilinear, ``align_corners=False``) sits at CRM coordinate
``(u + 0.5)/f - 0.5``, i.e. on input pixel ``s * ((u + 0.5)/f - 0.5)``; with the default ``f = 2``
and ``s = 8`` that is pixel ``4u - 2``. ``find_peaks`` rounds it and clips it to the image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from wsseg.errors import BadInputError

FILTERS = ("median", "mean", "none")
T = TypeVar("T", float, torch.Tensor)


@dataclass(frozen=True)
class PeakConfig:
    """Settings of the peak stimulation layer.

    upsample: int >= 1, bilinear sub-pixel factor applied to the CRMs before the peak search.
        Default 2, not PRM's 8: PRM's 8 applies to a stride-32 network, giving one map cell per 4
        input pixels; our backbones have stride 8, so a factor 2 gives that same 4-pixel grid. A
        factor 8 here would search full-resolution maps, costing 1.3x (4 classes) to 3x (20
        classes) the small backbone's CPU forward instead of about 1.05x, for no new peaks
        (bilinear interpolation creates no maxima between the CRM cells).
    window: odd int >= 1, side of the square neighbourhood of the local-maximum test (PRM: 3).
    peak_filter: which local maxima count, per image and per class: "median" (PRM's default:
        peaks >= the median of that upsampled map), "mean" (>= its mean), a float (>= that value)
        or "none" (every local maximum).
    """

    upsample: int = 2
    window: int = 3
    peak_filter: str | float = "median"

    def __post_init__(self) -> None:
        if isinstance(self.upsample, bool) or not isinstance(self.upsample, int) or self.upsample < 1:
            raise BadInputError("upsample", f"must be an integer >= 1, got {self.upsample!r}")
        if (
            isinstance(self.window, bool)
            or not isinstance(self.window, int)
            or self.window < 1
            or self.window % 2 == 0
        ):
            raise BadInputError("window", f"must be an odd integer >= 1, got {self.window!r}")
        f = self.peak_filter
        if isinstance(f, str):
            if f not in FILTERS:
                raise BadInputError("peak_filter", f"expected one of {FILTERS} or a number, got {f!r}")
        elif isinstance(f, bool) or not isinstance(f, int | float) or not np.isfinite(f):
            raise BadInputError("peak_filter", f"expected one of {FILTERS} or a finite number, got {f!r}")


@dataclass(frozen=True)
class Peak:
    """One class peak.

    class_index: int in [0, C).
    y, x: int, input-image pixel (row, column) of the peak, clipped to the image when its size is known.
    value: float, CRM value at the peak (upsampled map, raw logit scale).
    map_y, map_x: int, cell of the upsampled CRM (``upsample`` x the CRM size) holding the peak.
    """

    class_index: int
    y: int
    x: int
    value: float
    map_y: int
    map_x: int


def upsample_crm(crm: torch.Tensor, factor: int) -> torch.Tensor:
    """Bilinear upsampling (``align_corners=False``) of float BxCxhxw maps by an integer factor."""
    if factor == 1:
        return crm
    return F.interpolate(crm, scale_factor=factor, mode="bilinear", align_corners=False)


def smooth_maps(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur (std ``sigma`` cells, separable, edges replicated) of float BxCxHxW maps.

    At inference it removes the ripples that strided and dilated convolutions leave on a CRM, so a
    blob has one maximum near its centre instead of a ring of small ones.
    """
    if sigma <= 0:
        return maps
    radius = max(1, int(round(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=maps.dtype, device=maps.device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    b, c, h, w = maps.shape
    flat = maps.reshape(b * c, 1, h, w)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))
    return flat.reshape(b, c, h, w)


def box_max(maps: torch.Tensor, window: int) -> torch.Tensor:
    """Maximum of float BxCxHxW ``maps`` over a window x window box centred on each cell.

    Same result as ``F.max_pool2d(maps, window, stride=1, padding=window // 2)`` (the outside of the
    map counts as -inf), computed as a separable running maximum: several times faster on the CPU.
    """
    if window == 1:
        return maps
    h, w = maps.shape[-2:]
    pad = window // 2
    padded = F.pad(maps, (pad, pad, pad, pad), value=-float("inf"))
    rows = padded[..., :, 0:w]
    for k in range(1, window):
        rows = torch.maximum(rows, padded[..., :, k : k + w])
    out = rows[..., 0:h, :]
    for k in range(1, window):
        out = torch.maximum(out, rows[..., k : k + h, :])
    return out


def local_maxima(maps: torch.Tensor, window: int) -> torch.Tensor:
    """Bool BxCxHxW mask of the local maxima of float BxCxHxW ``maps`` in a window x window box.

    A cell is a maximum when no cell of its window is larger (borders see only the inside of the
    map). Ties are broken so that a flat plateau gives one peak: among equal maxima within a
    window only the first in raster order is kept.
    """
    with torch.no_grad():
        is_max = maps == box_max(maps, window)
        if window == 1:
            return is_max
        h, w = maps.shape[-2:]
        order = -torch.arange(h * w, device=maps.device, dtype=maps.dtype).view(1, 1, h, w)
        # Two maxima in each other's windows have equal values; keep the one of lowest raster index.
        key = torch.where(is_max, order, torch.full_like(maps, -float("inf")))
        return is_max & (key == box_max(key, window))


def filter_values(maps: torch.Tensor, peak_filter: str | float) -> torch.Tensor:
    """Float BxCx1x1 threshold per map: its (lower) median, its mean, a constant, or -inf for "none"."""
    flat = maps.detach().flatten(2)
    if peak_filter == "median":
        value = flat.median(dim=2).values
    elif peak_filter == "mean":
        value = flat.mean(dim=2)
    elif peak_filter == "none":
        value = torch.full(flat.shape[:2], -float("inf"), dtype=maps.dtype, device=maps.device)
    else:
        value = torch.full(flat.shape[:2], float(peak_filter), dtype=maps.dtype, device=maps.device)
    return value[..., None, None]


def peak_mask(maps: torch.Tensor, cfg: PeakConfig) -> torch.Tensor:
    """Bool BxCxHxW mask of the local maxima of ``maps`` that pass ``cfg.peak_filter``."""
    with torch.no_grad():
        return local_maxima(maps, cfg.window) & (maps >= filter_values(maps, cfg.peak_filter))


def peak_stimulation(crm: torch.Tensor, cfg: PeakConfig) -> dict[str, torch.Tensor]:
    """The PSL on float BxCxhxw CRMs.

    Returns a dict with ``logits`` (float BxC, mean of the kept peaks of each map), ``crm_up``
    (float BxCx(h*f)x(w*f), the upsampled maps) and ``peaks`` (bool, same shape, the kept peaks).
    When a fixed-number filter leaves a map without peaks, its global maximum is kept (it is always
    a local maximum), so every score is defined.
    """
    crm_up = upsample_crm(crm, cfg.upsample)
    mask = peak_mask(crm_up, cfg)
    with torch.no_grad():
        empty = ~mask.flatten(2).any(dim=2)
        if bool(empty.any()):
            top = crm_up.detach().flatten(2).argmax(dim=2, keepdim=True)
            add = torch.zeros_like(mask.flatten(2)).scatter_(2, top, True) & empty[..., None]
            mask = mask | add.view_as(mask)
    weights = mask.to(crm_up.dtype)
    logits = (crm_up * weights).sum(dim=(2, 3)) / weights.sum(dim=(2, 3))
    return {"logits": logits, "crm_up": crm_up, "peaks": mask}


def global_average_pooling(crm: torch.Tensor) -> dict[str, torch.Tensor]:
    """Plain CAM scores: ``logits`` float BxC, the mean of each BxCxhxw map."""
    return {"logits": crm.mean(dim=(2, 3))}


def map_to_image(coord: T, stride: int, upsample: int) -> T:
    """Input-pixel coordinate of upsampled-map coordinate ``coord`` (float or tensor; see the module docstring)."""
    return stride * ((coord + 0.5) / upsample - 0.5)


def find_peaks(
    crm: torch.Tensor | np.ndarray,
    cfg: PeakConfig | None = None,
    class_threshold: float | None = None,
    peak_threshold: float | None = None,
    stride: int = 8,
    image_size: tuple[int, int] | None = None,
    class_scores: torch.Tensor | np.ndarray | None = None,
    relative_threshold: float | None = None,
    smooth: float | None = None,
) -> list[Peak]:
    """Peaks of one image's float CxHxW CRMs (raw, not upsampled), strongest first.

    class_threshold: classes whose score is below it are skipped; the score is ``class_scores``
        (float C, for example the model's logits) when given, else the PSL score of ``crm``.
    peak_threshold: peaks whose value is below it are skipped (after ``cfg.peak_filter``; unlike
        the PSL, no global maximum is added back when the filters leave a class without peaks).
    relative_threshold: peaks below this fraction of their class map's maximum are skipped (a
        per-image, per-class threshold: it keeps the strong instances of a class and drops the
        ripples of its map).
    smooth: when > 0, the CRMs are blurred with a Gaussian of this std (in CRM cells) before the
        search; peak values are then those of the blurred maps.
    stride: output stride of the backbone that produced ``crm``; image_size: (H, W) of the input,
        used to clip the pixel coordinates.
    """
    cfg = cfg or PeakConfig()
    maps = torch.as_tensor(crm).detach().float()
    if maps.ndim != 3:
        raise BadInputError("crm", f"expected a CxHxW array, got shape {tuple(maps.shape)}")
    up = upsample_crm(smooth_maps(maps[None], smooth) if smooth else maps[None], cfg.upsample)
    keep = peak_mask(up, cfg)[0]
    up = up[0]
    if peak_threshold is not None:
        keep &= up >= peak_threshold
    if relative_threshold is not None:
        keep &= up >= relative_threshold * up.flatten(1).amax(dim=1)[:, None, None]
    if class_threshold is not None:
        if class_scores is None:
            scores = peak_stimulation(maps[None], cfg)["logits"][0]
        else:
            scores = torch.as_tensor(class_scores).float().flatten().to(keep.device)
        keep &= (scores >= class_threshold)[:, None, None]
    cls, my, mx = torch.nonzero(keep, as_tuple=True)
    values = up[cls, my, mx]
    order = torch.argsort(values, descending=True)
    cls, my, mx, values = cls[order], my[order], mx[order], values[order]
    ys = torch.floor(map_to_image(my.double(), stride, cfg.upsample) + 0.5).long().clamp(min=0)
    xs = torch.floor(map_to_image(mx.double(), stride, cfg.upsample) + 0.5).long().clamp(min=0)
    if image_size is not None:
        ys, xs = ys.clamp(max=image_size[0] - 1), xs.clamp(max=image_size[1] - 1)
    rows = zip(cls.tolist(), ys.tolist(), xs.tolist(), values.tolist(), my.tolist(), mx.tolist(), strict=True)
    return [Peak(*row) for row in rows]
