"""Fully connected CRF with Gaussian edge potentials (Kraehenbuehl & Koltun 2011), mean-field, in torch.

Energy over labels z: ``E(z) = sum_i -log P_i(z_i) + sum_{i<j} mu(z_i, z_j) sum_m w_m k_m(f_i, f_j)`` with
the Potts compatibility ``mu(a, b) = [a != b]`` and two kernels:

- appearance: ``k(i, j) = exp(-|p_i - p_j|^2 / (2 sxy^2) - |I_i - I_j|^2 / (2 srgb^2))`` (positions in
  pixels, colours on the 0..255 scale);
- smoothness: ``k(i, j) = exp(-|p_i - p_j|^2 / (2 s^2))``.

Mean-field update (Potts, labels' constant terms dropped before the softmax)::

    Q_i(l) <- softmax_l( log P_i(l) + sum_m w_m * M_m[Q]_i(l) )
    M_m[Q]_i(l) = sum_j k_m(i, j) Q_j(l) / sum_j k_m(i, j)

The message ``M`` is the kernel-weighted *average* of the neighbours' distributions (a normalised
filter, like pydensecrf's default symmetric normalisation), so the weights ``w_m`` are in nats.

Filtering, approximated:

- the appearance kernel over all pixel pairs is a 5-D Gaussian filter in (y/sxy, x/sxy, r/srgb, g/srgb,
  b/srgb). It runs on a bilateral grid (Chen, Paris & Durand 2007) with one cell per standard
  deviation: values are splatted multilinearly onto the 32 corners of each pixel's cell, blurred with
  [1, 2, 1] / 4 along each of the 5 axes, and read back multilinearly. The effective kernel is
  close to a Gaussian of 0.9 standard deviations per axis (variance 1/2 + 2 * 1/6 cells^2);
- the smoothness kernel is an exact separable Gaussian convolution truncated at 3 standard deviations;
- by default (``CRFConfig.scale = 0.5``) both messages are computed on maps downsampled by 2 and
  upsampled bilinearly (the network's own output stride is 4, so little detail is lost; 4x cheaper).

``local_message`` is the same appearance-weighted average restricted to a window of neighbours
(exact, by unfolding); the pixel-label estimator's neighbourhood loss uses it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from wsseg.errors import BadInputError


@dataclass(frozen=True)
class CRFConfig:
    """Mean-field settings. Kernel widths in pixels (positions) and 0..255 levels (colours); weights in
    nats. Defaults: DeepLab's DenseCRF widths (appearance 80 px / 13 levels, smoothness 3 px) with
    weights tuned on shapes (docs/methods.md). ``scale`` < 1 computes the messages on area-downsampled
    maps (kernel widths scaled with them) and upsamples them bilinearly; the unaries stay at full size."""

    iterations: int = 5
    appearance_weight: float = 4.0
    appearance_xy: float = 80.0
    appearance_rgb: float = 13.0
    smoothness_weight: float = 3.0
    smoothness_xy: float = 3.0
    scale: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 < self.scale <= 1.0:
            raise BadInputError("scale", f"must be in (0, 1], got {self.scale}")
        if self.iterations < 1:
            raise BadInputError("iterations", f"must be at least 1, got {self.iterations}")
        for name in ("appearance_xy", "appearance_rgb", "smoothness_xy"):
            if not getattr(self, name) > 0:
                raise BadInputError(name, f"must be positive, got {getattr(self, name)}")


def _check(probs: torch.Tensor, image: torch.Tensor) -> None:
    if probs.ndim != 4 or image.ndim != 4 or image.shape[1] != 3:
        raise BadInputError(
            "probs/image",
            f"expected BxKxHxW probabilities and a Bx3xHxW image, got {tuple(probs.shape)} and "
            f"{tuple(image.shape)}",
        )
    if probs.shape[0] != image.shape[0] or probs.shape[2:] != image.shape[2:]:
        raise BadInputError("probs/image", f"sizes differ: {tuple(probs.shape)} against {tuple(image.shape)}")


def local_message(
    probs: torch.Tensor,
    image: torch.Tensor,
    radius: int = 2,
    dilation: int = 2,
    sigma_xy: float = 4.0,
    sigma_rgb: float = 13.0,
) -> torch.Tensor:
    """Appearance-weighted average of each pixel's neighbours' distributions (the pixel itself excluded).

    probs: float BxKxHxW; image: float Bx3xHxW on the 0..255 scale. Neighbours: the (2r+1)^2 - 1 pixels of
    a window with step ``dilation`` inside the image. Returns float BxKxHxW, each pixel a convex combination
    of its neighbours' vectors (so it sums to one where ``probs`` does).
    """
    _check(probs, image)
    h, w = probs.shape[2:]
    pad = radius * dilation
    padded_probs = F.pad(probs, (pad, pad, pad, pad))
    padded_image = F.pad(image, (pad, pad, pad, pad))
    inside = F.pad(torch.ones_like(image[:, :1]), (pad, pad, pad, pad))
    total = torch.zeros_like(probs)
    norm = torch.zeros_like(probs[:, :1])
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dy == 0 and dx == 0:
                continue
            y, x = pad + dy * dilation, pad + dx * dilation
            colour = padded_image[:, :, y : y + h, x : x + w]
            d2 = float((dy * dilation) ** 2 + (dx * dilation) ** 2)
            c2 = ((colour - image) ** 2).sum(1, keepdim=True)
            weight = torch.exp(-c2 / (2 * sigma_rgb**2) - d2 / (2 * sigma_xy**2))
            weight = weight * inside[:, :, y : y + h, x : x + w]
            total += weight * padded_probs[:, :, y : y + h, x : x + w]
            norm += weight
    return total / norm.clamp_min(1e-12)


def gaussian_filter(values: torch.Tensor, sigma: float) -> torch.Tensor:
    """Normalised Gaussian blur of float BxKxHxW ``values`` (std ``sigma`` px, truncated at 3 sigma)."""
    radius = max(1, int(3 * sigma + 0.5))
    x = torch.arange(-radius, radius + 1, dtype=values.dtype, device=values.device)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    k = values.shape[1]

    def blur(t: torch.Tensor) -> torch.Tensor:
        c = t.shape[1]
        t = F.conv2d(t, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), padding=(0, radius), groups=c)
        return F.conv2d(t, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), padding=(radius, 0), groups=c)

    out = blur(torch.cat([values, torch.ones_like(values[:, :1])], 1))
    return out[:, :k] / out[:, k:].clamp_min(1e-12)


@dataclass(frozen=True)
class BilateralGrid:
    """Where one image's pixels fall on the bilateral grid: built once, used for every mean-field step.

    index, weight: int64 / float 32xN, the flattened grid cell and multilinear weight of each of the 32
    corners of each pixel's cell; dims: the grid's 5 sizes (one empty cell of margin on every side).
    """

    index: torch.Tensor
    weight: torch.Tensor
    dims: tuple[int, ...]
    height: int
    width: int

    @classmethod
    def build(cls, image: torch.Tensor, sigma_xy: float, sigma_rgb: float) -> BilateralGrid:
        """image: float 3xHxW on 0..255."""
        _, h, w = image.shape
        ys, xs = torch.meshgrid(
            torch.arange(h, dtype=image.dtype, device=image.device),
            torch.arange(w, dtype=image.dtype, device=image.device),
            indexing="ij",
        )
        feats = torch.cat([torch.stack([ys, xs]).reshape(2, -1) / sigma_xy, image.reshape(3, -1) / sigma_rgb])
        feats = feats - feats.min(1, keepdim=True).values + 1.0
        base = feats.floor().long()
        frac = feats - base
        dims = tuple(int(v) + 3 for v in base.max(1).values)
        strides = torch.tensor(
            [int(torch.tensor(dims[d + 1 :]).prod()) for d in range(5)], device=image.device
        )
        corners = torch.tensor(list(itertools.product((0, 1), repeat=5)), device=image.device)  # 32x5
        index = ((base[None] + corners[:, :, None]) * strides[None, :, None]).sum(1)
        weight = torch.where(corners[:, :, None].bool(), frac[None], 1 - frac[None]).prod(1)
        return cls(index, weight, dims, h, w)

    def filter(self, values: torch.Tensor) -> torch.Tensor:
        """Normalised appearance filter of float KxHxW ``values`` -> float KxHxW."""
        k = values.shape[0]
        data = torch.cat([values.reshape(k, -1), torch.ones_like(values[:1].reshape(1, -1))]).T  # Nx(K+1)
        cells = int(torch.tensor(self.dims).prod())
        grid = torch.zeros(cells, k + 1, dtype=values.dtype, device=values.device)
        for corner in range(32):
            grid.index_add_(0, self.index[corner], data * self.weight[corner][:, None])
        grid = grid.view(*self.dims, k + 1)
        for axis in range(5):
            n = grid.shape[axis]
            blurred = grid * 0.5
            blurred.narrow(axis, 1, n - 1).add_(grid.narrow(axis, 0, n - 1), alpha=0.25)
            blurred.narrow(axis, 0, n - 1).add_(grid.narrow(axis, 1, n - 1), alpha=0.25)
            grid = blurred
        grid = grid.reshape(cells, k + 1)
        sliced = sum(grid[self.index[c]] * self.weight[c][:, None] for c in range(32))
        return (sliced[:, :k] / sliced[:, k:].clamp_min(1e-12)).T.reshape(k, self.height, self.width)


def bilateral_filter(
    values: torch.Tensor, image: torch.Tensor, sigma_xy: float, sigma_rgb: float
) -> torch.Tensor:
    """Normalised fully connected appearance filter on a bilateral grid (see the module docstring).

    values: float BxKxHxW; image: float Bx3xHxW on 0..255. Returns float BxKxHxW.
    """
    _check(values, image)
    return torch.stack(
        [BilateralGrid.build(image[n], sigma_xy, sigma_rgb).filter(values[n]) for n in range(len(values))]
    )


def dense_crf(probs: torch.Tensor, image: torch.Tensor, config: CRFConfig | None = None) -> torch.Tensor:
    """Refine float BxKxHxW label probabilities with mean-field; image: float Bx3xHxW on 0..255 (or uint8
    BxHxWx3). Returns float BxKxHxW probabilities (each pixel sums to one)."""
    config = config or CRFConfig()
    if image.dtype == torch.uint8 and image.ndim == 4 and image.shape[-1] == 3:
        image = image.permute(0, 3, 1, 2)
    image = image.to(probs.dtype)
    _check(probs, image)
    unary = probs.clamp_min(1e-8).log()
    size = probs.shape[2:]
    small = tuple(max(1, round(v * config.scale)) for v in size)
    image = F.interpolate(image, size=small, mode="area") if small != size else image
    grids = [
        BilateralGrid.build(im, config.appearance_xy * config.scale, config.appearance_rgb) for im in image
    ]
    q = probs
    for _ in range(config.iterations):
        low = F.interpolate(q, size=small, mode="area") if small != size else q
        message = config.smoothness_weight * gaussian_filter(low, config.smoothness_xy * config.scale)
        if config.appearance_weight:
            appearance = torch.stack([grid.filter(low[n]) for n, grid in enumerate(grids)])
            message = message + config.appearance_weight * appearance
        if small != size:
            message = F.interpolate(message, size=size, mode="bilinear", align_corners=False)
        q = torch.softmax(unary + message, dim=1)
    return q
