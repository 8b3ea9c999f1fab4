"""Pseudo masks (step 5): one proposal per peak, by PRM retrieval or by the WISE rule.

PRM retrieval (Zhou et al., CVPR 2018, as in their released code). For a peak of class c with peak
response map R (HxW, sums to 1) and a proposal S (HxW bool),

    score(S) = alpha * sum_{S} R  +  sum_{contour(S)} R  -  beta * sum_{S} Q,
    contour(S) = dilate(S) - erode(S) with a ``contour_width`` square (the morphological gradient),
    Q = [CRM_c upsampled (bicubic) to HxW  <  bg * mean(CRM_c upsampled)],

over the ``proposal_count`` best proposals whose area lies in [min_area, max_area) of the image; the
best-scoring proposal is the instance. Instances are then sorted by score and a greedy mask NMS at
IoU ``nms_iou`` (over all classes, as in the paper's code) drops the duplicates, adding each dropped
instance's PRM to the PRM of the instance that suppressed it.

WISE (Laradji et al., BMVC 2019): the argmax pixel of the peak's PRM is the instance's point; among
the proposals containing it (same size limits), the one with the highest objectness is the instance.
The same NMS follows.

Everything here is per image and pure numpy/OpenCV; ``wsseg.stages.make_pseudo_masks`` runs it over a
project.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from wsseg.errors import BadInputError
from wsseg.methods.proposals import Proposals

STRATEGIES: tuple[str, ...] = ("prm", "wise")
CONFIDENCES: tuple[str, ...] = ("retrieval", "peak")
POINTS: tuple[str, ...] = ("prm_argmax", "peak")


@dataclass(frozen=True)
class RetrievalConfig:
    """How a proposal is chosen for each peak.

    strategy: "prm" (PRM retrieval score) or "wise" (highest objectness containing the PRM argmax).
    alpha, beta, bg: weights of the PRM score (see the module docstring). PRM's published values
        are alpha 0.8, beta 1e-5, bg 0.95 (``PAPER_RETRIEVAL``); beta here is 1e-2: with 1e-5 the
        background term is too weak to stop a proposal from swallowing the whole class region
        (docs/benchmark.md, "Pseudo masks with the 57 px classifier", has the sweep).
    contour_width: side of the square structuring element of the contour (pixels, PRM: 5).
    min_area, max_area: proposals outside [min_area, max_area) of the image area are skipped
        (PRM: 0.002% and 85%).
    proposal_count: only the first (best objectness) proposals are considered (PRM: 100).
    nms_iou: mask NMS threshold (PRM: 0.3); None: no NMS.
    merge_prms: the PRMs of suppressed instances are added to the one that suppressed them.
    confidence: the score an instance is ranked by (NMS, mAP): "retrieval" (the PRM score, or the
        objectness for "wise") or "peak" (the peak's CRM value).
    top_k: how many ranked proposals each pseudo mask keeps in its lineage.
    point: the instance's point: "prm_argmax" (WISE: the argmax of the peak's PRM) or "peak" (the peak
        itself, the default: with a small receptive field the peak falls inside its instance more often
        than the PRM's argmax does).
    contain_point: "prm" strategy only: consider only proposals that contain the point (default). The
        variants are compared in docs/benchmark.md ("Pseudo masks with the 57 px classifier").
    """

    strategy: str = "prm"
    alpha: float = 0.8
    beta: float = 1e-2
    bg: float = 0.95
    contour_width: int = 5
    min_area: float = 0.00002
    max_area: float = 0.85
    proposal_count: int = 100
    nms_iou: float | None = 0.3
    merge_prms: bool = True
    confidence: str = "retrieval"
    top_k: int = 5
    point: str = "peak"
    contain_point: bool = True

    def __post_init__(self) -> None:
        checks = [
            (self.strategy in STRATEGIES, f"strategy one of {STRATEGIES}"),
            (self.confidence in CONFIDENCES, f"confidence one of {CONFIDENCES}"),
            (self.point in POINTS, f"point one of {POINTS}"),
            (self.contour_width >= 1, "contour_width >= 1"),
            (0.0 <= self.min_area < self.max_area <= 1.0, "0 <= min_area < max_area <= 1"),
            (self.proposal_count >= 1 and self.top_k >= 0, "proposal_count >= 1 and top_k >= 0"),
            (self.nms_iou is None or 0.0 < self.nms_iou <= 1.0, "nms_iou in (0, 1] or None"),
            (all(np.isfinite([self.alpha, self.beta, self.bg])), "finite alpha, beta and bg"),
        ]
        for ok, expected in checks:
            if not ok:
                raise BadInputError("retrieval config", f"expected {expected}; got {self}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RetrievalConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        if set(values) - names:
            raise BadInputError("retrieval config", f"unknown keys {sorted(set(values) - names)}")
        return cls(**values)


PAPER_RETRIEVAL = RetrievalConfig(alpha=0.8, beta=1e-5, bg=0.95)
"""PRM's published retrieval settings."""


@dataclass(frozen=True)
class PeakInput:
    """One peak of an image: class index, (y, x) input pixel, CRM value; ``prm`` HxW float32 >= 0."""

    class_index: int
    y: int
    x: int
    value: float
    prm: np.ndarray


@dataclass(frozen=True)
class PseudoMask:
    """One retrieved instance.

    class_index: int; mask: HxW bool; score: the confidence (``RetrievalConfig.confidence``).
    peak: index of its peak in the image's peak list; proposal: index of the chosen proposal.
    prm: HxW float32, its peak's PRM plus those of the instances it suppressed.
    merged: indices of the peaks whose instances it suppressed.
    point: (y, x) the instance's point (``RetrievalConfig.point``), for both strategies.
    ranked: the ``top_k`` best proposals for the peak, best first, each a dict with ``proposal``
        (index), ``score`` and its terms: ``inside`` (sum of R in S), ``contour`` (sum of R on the
        contour), ``background`` (sum of Q in S), ``objectness``, ``area`` (pixels).
    """

    class_index: int
    mask: np.ndarray
    score: float
    peak: int
    proposal: int
    prm: np.ndarray
    merged: tuple[int, ...]
    point: tuple[int, int]
    ranked: tuple[dict[str, float], ...]


def contours(masks: np.ndarray, width: int = 5) -> np.ndarray:
    """KxHxW bool masks -> KxHxW bool morphological gradients with a ``width`` x ``width`` square."""
    kernel = np.ones((width, width), np.uint8)
    out = np.zeros(masks.shape, bool)
    for k, mask in enumerate(masks):
        out[k] = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_GRADIENT, kernel).astype(bool)
    return out


def background_map(crm: np.ndarray, shape: tuple[int, int], bg: float) -> np.ndarray:
    """Q: one class's float hxw CRM upsampled (bicubic) to ``shape`` (H, W), then ``< bg * its mean``:
    HxW float32 in {0, 1}."""
    up = cv2.resize(np.asarray(crm, np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)
    return (up < bg * up.mean()).astype(np.float32)


#: Proposals whose sums are taken at once: memory then holds 2 x 32 float rows of the image, not 2 x K.
_PROPOSAL_CHUNK = 32


def score_terms(
    masks: np.ndarray,
    contour: np.ndarray,
    prms: np.ndarray,
    background: np.ndarray,
    background_of: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The three sums of the PRM score for K proposals and N peaks.

    masks, contour: KxHxW bool; prms: NxHxW float; background: NxHxW float (Q of each peak's class), or
    MxHxW with ``background_of`` (int N: the row of ``background`` each peak uses, such as one Q per
    class instead of one per peak). Returns ``inside``, ``contour``, ``background``: KxN float64.
    """
    r = np.asarray(prms.reshape(len(prms), -1), np.float32).T
    q = np.asarray(background.reshape(len(background), -1), np.float32).T
    rows = np.arange(len(prms)) if background_of is None else np.asarray(background_of)
    out = {name: np.empty((len(masks), len(prms))) for name in ("inside", "contour", "background")}
    for start in range(0, len(masks), _PROPOSAL_CHUNK):
        part = slice(start, start + _PROPOSAL_CHUNK)
        flat = masks[part].reshape(-1, r.shape[0]).astype(np.float32)
        edge = contour[part].reshape(-1, r.shape[0]).astype(np.float32)
        out["inside"][part] = flat @ r
        out["contour"][part] = edge @ r
        out["background"][part] = (flat @ q)[:, rows]
    return out


def retrieve(
    proposals: Proposals, peaks: list[PeakInput], crm: np.ndarray, config: RetrievalConfig | None = None
) -> list[PseudoMask]:
    """Pseudo masks of one image: one proposal per peak, then mask NMS.

    proposals: the image's candidates, best objectness first (KxHxW). peaks: its peaks, each with a
    PRM of the proposals' size. crm: float Cxhxw class response maps (any resolution).
    """
    config = config or RetrievalConfig()
    h, w = proposals.masks.shape[1:]
    for peak in peaks:
        if peak.prm.shape != (h, w):
            raise BadInputError("prm", f"expected an {h}x{w} map like the proposals; got {peak.prm.shape}")
    if not peaks or not len(proposals):
        return []
    masks = proposals.masks[: config.proposal_count]
    objectness = np.asarray(proposals.objectness[: config.proposal_count], np.float64)
    area = masks.reshape(len(masks), -1).sum(axis=1)
    usable = (area >= config.min_area * h * w) & (area < config.max_area * h * w)
    prms = np.stack([p.prm for p in peaks]).astype(np.float32, copy=False)
    points = [
        np.unravel_index(int(p.prm.argmax()), (h, w))
        if config.point == "prm_argmax"
        else (min(max(int(p.y), 0), h - 1), min(max(int(p.x), 0), w - 1))
        for p in peaks
    ]
    inside = np.stack([masks[:, y, x] for y, x in points], axis=1)  # NxK: proposal n holds point k
    if config.strategy == "prm":
        classes = sorted({p.class_index for p in peaks})
        q = np.stack([background_map(crm[c], (h, w), config.bg) for c in classes])  # one Q per class
        of = [classes.index(p.class_index) for p in peaks]
        terms = score_terms(masks, contours(masks, config.contour_width), prms, q, np.asarray(of))
        score = config.alpha * terms["inside"] + terms["contour"] - config.beta * terms["background"]
        if config.contain_point:
            score = np.where(inside, score, -np.inf)
    else:
        terms = {"inside": inside.astype(np.float64)}
        score = np.where(inside, objectness[:, None], -np.inf)
    score = np.where(usable[:, None], score, -np.inf)
    found = []
    for n, peak in enumerate(peaks):
        order = np.argsort(-score[:, n], kind="stable")
        order = order[np.isfinite(score[order, n])]
        if not len(order):
            continue
        ranked = tuple(
            {
                "proposal": int(j),
                "score": float(score[j, n]),
                **{name: float(values[j, n]) for name, values in terms.items()},
                "objectness": float(objectness[j]),
                "area": int(area[j]),
            }
            for j in order[: config.top_k]
        )
        best = int(order[0])
        confidence = float(score[best, n]) if config.confidence == "retrieval" else float(peak.value)
        found.append(
            PseudoMask(
                class_index=peak.class_index,
                mask=masks[best],
                score=confidence,
                peak=n,
                proposal=best,
                prm=prms[n],
                merged=(),
                point=(int(points[n][0]), int(points[n][1])),
                ranked=ranked,
            )
        )
    return mask_nms(found, config.nms_iou, config.merge_prms) if config.nms_iou is not None else found


def mask_nms(instances: list[PseudoMask], iou: float = 0.3, merge_prms: bool = True) -> list[PseudoMask]:
    """Greedy NMS over all classes, highest score first: an instance whose mask IoU with a kept one is
    at least ``iou`` is dropped; with ``merge_prms`` its PRM (and its merged peaks) join the kept one's."""
    pending = sorted(instances, key=lambda m: -m.score)
    kept: list[PseudoMask] = []
    while pending:
        head, rest = pending[0], pending[1:]
        prm, merged, pending = head.prm, list(head.merged), []
        for other in rest:
            inter = np.logical_and(head.mask, other.mask).sum()
            union = np.logical_or(head.mask, other.mask).sum()
            if inter / (union + 1e-10) < iou:
                pending.append(other)
            elif merge_prms:
                prm = prm + other.prm
                merged += [other.peak, *other.merged]
        kept.append(dataclasses.replace(head, prm=prm, merged=tuple(merged)))
    return kept
