"""Pixel-label estimator (Pandey & Dukkipati, arXiv 1705.01262): semantic segmentation from image tags.

The network (``wsseg.models.segmenter.Segmenter``) gives p(z|x) at every pixel. Training with tags only:

- ``pixel_label_estimate``: the image's tags injected into p to form q_aux, a fixed target (no gradient);
- ``neighbourhood_loss``: KL from the colour- and position-weighted average of each pixel's neighbours'
  distributions to the pixel's own (the mean-field constraint of a CRF, imposed as a loss);
- ``classification_loss``: the tags predicted from the pooled p.

The equations are in docs/methods.md (section "Pixel-label estimator"). ``full_losses`` trains the same
network on pixel labels (the upper bound). ``confusion``/``miou`` score label maps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from wsseg.errors import BadInputError
from wsseg.methods.crf import local_message
from wsseg.models.normalise import denormalize

IGNORE = 255
"""Label value of pixels with no ground truth (ignored in the losses and in mIoU)."""


@dataclass(frozen=True)
class PLEConfig:
    """Loss weights and the estimator's settings (defaults justified in docs/methods.md).

    background: True when label 0 is background (present in every image, never a tag); the labels
        1..C are then the classes. False (e.g. CamVid): labels 0..C-1 are the classes.
    share: each present class wins at least this fraction of the image's pixels in q_aux;
        ``background_share`` is the same for background.
    estimator_weight, neighbourhood_weight, classification_weight: weights of the three losses.
    top_fraction: a class's image score is the mean of p over its top ``top_fraction`` pixels.
    radius, dilation, sigma_xy, sigma_rgb: the neighbourhood (window radius in steps, step in pixels,
        position std in pixels, colour std in 0..255 levels), at the loss resolution.
    loss_scale: every loss (also the supervised baseline's) is computed on maps of ``loss_scale`` times
        the input size (0.5: four times cheaper; the network's own output stride is 4).
    """

    background: bool = True
    share: float = 0.005
    background_share: float = 0.5
    estimator_weight: float = 1.0
    neighbourhood_weight: float = 10.0
    classification_weight: float = 1.0
    top_fraction: float = 0.05
    radius: int = 1
    dilation: int = 1
    sigma_xy: float = 4.0
    sigma_rgb: float = 13.0
    loss_scale: float = 0.5

    def __post_init__(self) -> None:
        for name in ("share", "background_share", "top_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise BadInputError(name, f"must be in [0, 1), got {value}")
        if self.radius < 1 or self.dilation < 1:
            raise BadInputError("radius/dilation", f"must be >= 1, got {self.radius}/{self.dilation}")


def present_labels(tags: torch.Tensor, background: bool) -> torch.Tensor:
    """float/bool BxC multi-hot tags -> bool BxK present labels (K = C + 1 with background first)."""
    present = tags > 0.5
    if background:
        present = torch.cat([torch.ones_like(present[:, :1]), present], dim=1)
    return present


def renormalised_over(probs: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """float BxKxHxW with absent labels (bool BxK ``present`` false) zeroed and each pixel renormalised
    over the present ones (q_aux's step 1, docs/methods.md)."""
    masked = probs * present[:, :, None, None].to(probs.dtype)
    return masked / masked.sum(1, keepdim=True).clamp_min(1e-12)


@torch.no_grad()
def pixel_label_estimate(probs: torch.Tensor, present: torch.Tensor, shares: torch.Tensor) -> torch.Tensor:
    """q_aux: the tags injected into p (docs/methods.md, equations 1-3). No gradient.

    probs: float BxKxHxW, p(z|x). present: bool BxK. shares: float K, the least fraction of pixels each
    present label must win. Returns float BxKxHxW: zero for absent labels, sums to one per pixel; for each
    present label k, its ceil(share_k * H * W) pixels of highest renormalised probability (not already
    taken by a label earlier in order) are one-hot on k. If the present labels' shares sum past one they
    are scaled down to fit.
    """
    b, k, h, w = probs.shape
    if present.shape != (b, k):
        raise BadInputError("present", f"expected shape {(b, k)}, got {tuple(present.shape)}")
    flat = renormalised_over(probs, present).view(b, k, h * w).clone()
    out = flat.clone()
    for n in range(b):
        labels = torch.nonzero(present[n]).flatten()
        wanted = shares[labels] * h * w
        if wanted.sum() > h * w:
            wanted = wanted * (h * w) / wanted.sum()
        taken = torch.zeros(h * w, dtype=torch.bool, device=probs.device)
        for label, count in zip(labels.tolist(), torch.ceil(wanted - 1e-6).long().tolist(), strict=True):
            count = min(count, int((~taken).sum()))
            if count <= 0:
                continue
            score = flat[n, label].masked_fill(taken, -1.0)
            chosen = torch.topk(score, count).indices
            out[n, :, chosen] = 0.0
            out[n, label, chosen] = 1.0
            taken[chosen] = True
    return out.view(b, k, h, w)


def label_shares(num_labels: int, config: PLEConfig) -> torch.Tensor:
    """float K: ``background_share`` for background (label 0 when ``config.background``), ``share`` else."""
    shares = torch.full((num_labels,), config.share)
    if config.background:
        shares[0] = config.background_share
    return shares


def soft_cross_entropy(target: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Mean over pixels of ``-sum_k target_k log softmax(logits)_k``; both float BxKxHxW."""
    return -(target * F.log_softmax(logits, dim=1)).sum(1).mean()


def neighbourhood_loss(probs: torch.Tensor, image: torch.Tensor, config: PLEConfig) -> torch.Tensor:
    """Mean over pixels of KL(m_i || p_i), m_i the appearance-weighted average of the neighbours' p
    (detached: a target, docs/methods.md equation 4). probs: float BxKxHxW; image: float Bx3xHxW 0..255."""
    with torch.no_grad():
        target = local_message(
            probs, image, config.radius, config.dilation, config.sigma_xy, config.sigma_rgb
        )
    logs = probs.clamp_min(1e-8).log()
    return (target * (target.clamp_min(1e-8).log() - logs)).sum(1).mean()


def image_scores(probs: torch.Tensor, top_fraction: float) -> torch.Tensor:
    """float BxKxHxW -> float BxK in [0, 1]: the mean of each label's top ``top_fraction`` pixel probs."""
    b, k, h, w = probs.shape
    count = max(1, int(round(top_fraction * h * w)))
    return probs.view(b, k, h * w).topk(count, dim=2).values.mean(2)


def classification_loss(probs: torch.Tensor, tags: torch.Tensor, config: PLEConfig) -> torch.Tensor:
    """Binary cross-entropy of the class scores (background excluded) against float BxC {0, 1} tags."""
    scores = image_scores(probs, config.top_fraction)
    if config.background:
        scores = scores[:, 1:]
    return F.binary_cross_entropy(scores.clamp(1e-6, 1 - 1e-6), tags.to(scores.dtype))


def weak_losses(
    logits: torch.Tensor, images: torch.Tensor, tags: torch.Tensor, config: PLEConfig
) -> dict[str, torch.Tensor]:
    """The estimator's three weighted losses. logits: float BxKxhxw (any size); images: normalised
    Bx3xHxW (area-resized to hxw for the neighbourhood); tags: BxC {0, 1}."""
    probs = torch.softmax(logits, dim=1)
    present = present_labels(tags, config.background)
    q_aux = pixel_label_estimate(probs.detach(), present, label_shares(logits.shape[1], config).to(logits))
    losses = {"estimator": config.estimator_weight * soft_cross_entropy(q_aux, logits)}
    if config.neighbourhood_weight:
        losses["neighbourhood"] = config.neighbourhood_weight * neighbourhood_loss(
            probs, F.interpolate(denormalize(images), size=logits.shape[2:], mode="area"), config
        )
    if config.classification_weight:
        losses["classification"] = config.classification_weight * classification_loss(probs, tags, config)
    return losses


def full_losses(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Pixel-wise cross-entropy against int64 BxHxW labels (``IGNORE`` skipped): the supervised baseline.
    Labels are resized (nearest) to the logits' size."""
    if labels.shape[1:] != logits.shape[2:]:
        labels = F.interpolate(labels[:, None].float(), size=logits.shape[2:], mode="nearest")[:, 0].long()
    return {"pixel": F.cross_entropy(logits, labels, ignore_index=IGNORE)}


def confusion(truth: np.ndarray, predicted: np.ndarray, num_labels: int) -> np.ndarray:
    """int64 KxK counts, rows truth and columns prediction; pixels whose truth is ``IGNORE`` are skipped.

    truth, predicted: integer HxW (or any equal shapes) label maps with values in 0..K-1 (truth may be
    ``IGNORE``).
    """
    if truth.shape != predicted.shape:
        raise BadInputError("predicted", f"shape {predicted.shape} differs from the truth's {truth.shape}")
    keep = truth != IGNORE
    t, p = truth[keep].astype(np.int64), predicted[keep].astype(np.int64)
    if t.size and (t.max() >= num_labels or p.max() >= num_labels or min(t.min(), p.min()) < 0):
        raise BadInputError("labels", f"values outside 0..{num_labels - 1}")
    return np.bincount(t * num_labels + p, minlength=num_labels**2).reshape(num_labels, num_labels)


def miou(counts: np.ndarray) -> tuple[float, np.ndarray]:
    """(mean IoU, float64 K per-label IoU) from a confusion matrix; labels absent from both the truth and
    the prediction get NaN and are left out of the mean."""
    counts = np.asarray(counts, dtype=np.float64)
    tp = np.diag(counts)
    union = counts.sum(0) + counts.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
    return (float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")), iou
