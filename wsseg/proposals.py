"""Class-agnostic and class-aware object proposals: candidate instance masks for the pseudo-mask stage.

Class-agnostic proposals follow selective search (Uijlings et al., IJCV 2013): superpixels from
Felzenszwalb-Huttenlocher graph segmentation, one set per (scale, colour space); the two most similar
adjacent regions are merged, again and again, until one region is left; every region on the way
(superpixels included) is a candidate mask. Similarity is a sum of terms, each in [0, 1]:

- colour: intersection of L1-normalised colour histograms (``colour_bins`` per channel);
- texture: intersection of L1-normalised histograms of gradient orientation (8 bins) x gradient
  magnitude (4 bins) per channel of the smoothed image;
- size: 1 - (size_i + size_j) / image area, so small regions merge first;
- fill: 1 - (bbox(i u j) - size_i - size_j) / image area, so regions that fill each other's gaps merge first.

All masks are kept as sets of *atoms*: the cells of the overlay of every superpixel map, so a region
of any hierarchy is a bool row over atoms, and areas, overlaps and boundaries are small matrix products.

Objectness (``score="contrast"``, the default) is the mean colour difference (Lab, smoothed) across a
region's boundary, times the fraction of its perimeter that lies inside the image (not on the image
border): an object is a region whose whole outline sits on a strong edge. ``score="hierarchy"`` is the
original selective-search ranking (merge level times a random factor, seeded, so deterministic) and is
kept for comparison.
"""

from __future__ import annotations

import dataclasses
import heapq
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils
from scipy import ndimage, sparse
from skimage.segmentation import felzenszwalb

from wsseg.errors import BadInputError

COLOUR_SPACES: dict[str, int | None] = {"rgb": None, "hsv": cv2.COLOR_RGB2HSV, "lab": cv2.COLOR_RGB2LAB}
SIMILARITIES: tuple[str, ...] = ("colour", "texture", "size", "fill")
_ORIENTATIONS, _MAGNITUDES = 8, 4
_MAGNITUDE_EDGES = np.array([2.0, 6.0, 16.0], np.float32)  # gradient magnitude bins, 0..255 scale


@dataclass(frozen=True)
class ProposalConfig:
    """How selective search runs; defaults follow the paper's "fast" mode, fitted to a 10x-felzenszwalb budget.

    scales: Felzenszwalb ``scale`` (k) values; larger gives larger superpixels.
    sigma, min_size: Felzenszwalb pre-smoothing (pixels) and smallest superpixel (pixels).
    colour_spaces: some of ``COLOUR_SPACES``; every (scale, colour space) pair is one hierarchy.
    similarities: the terms summed into the merge similarity, some of ``SIMILARITIES``.
    colour_bins: histogram bins per colour channel.
    max_proposals: how many proposals to keep, best objectness first.
    dedup_iou: a proposal whose mask IoU with a better one exceeds this is dropped.
    min_area, max_area: smallest and largest proposal, as fractions of the image area.
    score: objectness, "contrast" (boundary contrast, see the module docstring) or "hierarchy".
    seed: seeds the random factor of ``score="hierarchy"``.
    """

    scales: tuple[float, ...] = (50.0, 150.0, 400.0)
    sigma: float = 0.8
    min_size: int = 20
    colour_spaces: tuple[str, ...] = ("hsv", "lab")
    similarities: tuple[str, ...] = SIMILARITIES
    colour_bins: int = 25
    max_proposals: int = 200
    dedup_iou: float = 0.9
    min_area: float = 0.001
    max_area: float = 0.9
    score: str = "contrast"
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [
            (len(self.scales) > 0 and all(s > 0 for s in self.scales), "scales: positive numbers"),
            (self.sigma >= 0 and self.min_size >= 1, "sigma >= 0 and min_size >= 1"),
            (
                len(self.colour_spaces) > 0 and set(self.colour_spaces) <= set(COLOUR_SPACES),
                f"colour_spaces within {tuple(COLOUR_SPACES)}",
            ),
            (
                len(self.similarities) > 0 and set(self.similarities) <= set(SIMILARITIES),
                f"similarities within {SIMILARITIES}",
            ),
            (2 <= self.colour_bins <= 256, "2 <= colour_bins <= 256"),
            (self.max_proposals >= 1, "max_proposals >= 1"),
            (0.0 < self.dedup_iou <= 1.0, "dedup_iou in (0, 1]"),
            (0.0 <= self.min_area <= self.max_area <= 1.0, "0 <= min_area <= max_area <= 1"),
            (self.score in _SCORES, f"score one of {tuple(_SCORES)}"),
        ]
        for ok, expected in checks:
            if not ok:
                raise BadInputError("ProposalConfig", f"expected {expected}; got {self}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ProposalConfig:
        """Inverse of :meth:`to_dict` (lists become tuples); unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        if set(values) - names:
            raise BadInputError("proposal config", f"unknown keys {sorted(set(values) - names)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


@dataclass(frozen=True)
class Proposals:
    """Candidate masks of one image, best first.

    masks: KxHxW bool. objectness: K float32, non-increasing (its scale depends on the method).
    source: K int16 index into ``sources``, what produced each mask (a hierarchy such as
    "felzenszwalb k=150 lab", or a class map and level such as "class 2 level 0.50").
    level: K int32, merges that formed the region in its hierarchy (0 for a superpixel), or the
    connected-component index for class-aware proposals.
    """

    masks: np.ndarray
    objectness: np.ndarray
    source: np.ndarray
    level: np.ndarray
    sources: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.masks)


# --------------------------------------------------------------------------- hierarchical grouping


def _colour_image(image: np.ndarray, space: str) -> np.ndarray:
    code = COLOUR_SPACES[space]
    return image if code is None else cv2.cvtColor(image, code)


def _pixel_codes(colour: np.ndarray, space: str, bins: int) -> tuple[np.ndarray, int]:
    """HWx6 histogram bin of every pixel (3 colour, then 3 texture columns, offset into one vector), D."""
    h, w, _ = colour.shape
    top = np.array([180 if space == "hsv" else 256, 256, 256])
    codes = np.empty((h * w, 6), np.int32)
    codes[:, :3] = (colour.reshape(-1, 3).astype(np.int32) * bins) // top + np.arange(3) * bins
    smooth = cv2.GaussianBlur(colour.astype(np.float32), (0, 0), 1.0)
    gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3) / 8
    gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3) / 8
    angle = (np.arctan2(gy, gx) + np.pi) * (_ORIENTATIONS / (2 * np.pi))
    orient = np.minimum(angle.astype(np.int32), _ORIENTATIONS - 1)
    magnitude = np.searchsorted(_MAGNITUDE_EDGES, np.hypot(gx, gy))
    texture = orient * _MAGNITUDES + magnitude + np.arange(3) * (_ORIENTATIONS * _MAGNITUDES)
    codes[:, 3:] = texture.reshape(-1, 3) + 3 * bins
    return codes, 3 * bins + 3 * _ORIENTATIONS * _MAGNITUDES


def _hierarchy(
    labels: np.ndarray, codes: np.ndarray, n_codes: int, colour_bins: int, terms: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy merging of the regions of ``labels`` (HxW int, 0..n-1, connected as a graph).

    Returns (members, level): (2n-1)xn bool, the superpixels in each region (the n superpixels first,
    then one region per merge), and 2n-1 int32 merge count of each region.
    """
    h, w = labels.shape
    n = int(labels.max()) + 1
    flat = labels.ravel()
    hist = np.bincount((flat[:, None] * n_codes + codes).ravel(), minlength=n * n_codes)
    hist = hist.reshape(n, n_codes).astype(np.float32)
    size = np.bincount(flat, minlength=n).astype(np.float64)
    total = float(h * w)
    # one feature vector per region whose histogram intersection is the sum of the histogram terms
    parts = []
    if "colour" in terms:
        parts.append(hist[:, : 3 * colour_bins] / (3 * size[:, None]))
    if "texture" in terms:
        parts.append(hist[:, 3 * colour_bins :] / (3 * size[:, None]))
    n_regions = 2 * n - 1
    feats = np.zeros((n_regions, sum(p.shape[1] for p in parts)), np.float32)
    if parts:
        feats[:n] = np.concatenate(parts, axis=1)
    sizes = np.zeros(n_regions)
    sizes[:n] = size
    boxes = np.zeros((n_regions, 4))  # y0, x0, y1, x1 (exclusive)
    for k, sl in enumerate(ndimage.find_objects(labels + 1)):
        boxes[k] = sl[0].start, sl[1].start, sl[0].stop, sl[1].stop
    use_size, use_fill = "size" in terms, "fill" in terms

    def similarity(i: int | np.ndarray, j: np.ndarray) -> np.ndarray:
        sim = np.minimum(feats[i], feats[j]).sum(axis=-1, dtype=np.float64)
        both = sizes[i] + sizes[j]
        if use_size:
            sim += 1.0 - both / total
        if use_fill:
            y0 = np.minimum(boxes[i, 0], boxes[j, 0])
            x0 = np.minimum(boxes[i, 1], boxes[j, 1])
            y1 = np.maximum(boxes[i, 2], boxes[j, 2])
            x1 = np.maximum(boxes[i, 3], boxes[j, 3])
            sim += 1.0 - ((y1 - y0) * (x1 - x0) - both) / total
        return sim

    a = np.concatenate([labels[:, :-1].ravel(), labels[:-1, :].ravel()])
    b = np.concatenate([labels[:, 1:].ravel(), labels[1:, :].ravel()])
    cross = a != b
    pairs = np.unique(np.minimum(a[cross], b[cross]) * n + np.maximum(a[cross], b[cross]))
    first, second = pairs // n, pairs % n
    neighbours: list[set[int]] = [set() for _ in range(n_regions)]
    for i, j in zip(first.tolist(), second.tolist(), strict=True):
        neighbours[i].add(j)
        neighbours[j].add(i)
    heap = list(zip((-similarity(first, second)).tolist(), first.tolist(), second.tolist(), strict=True))
    heapq.heapify(heap)
    alive = np.zeros(n_regions, bool)
    alive[:n] = True
    members = np.zeros((n_regions, n), bool)
    members[np.arange(n), np.arange(n)] = True
    level = np.zeros(n_regions, np.int32)
    t = n
    while heap and t < n_regions:
        _, i, j = heapq.heappop(heap)
        if not (alive[i] and alive[j]):
            continue
        sizes[t] = sizes[i] + sizes[j]
        feats[t] = (feats[i] * sizes[i] + feats[j] * sizes[j]) / sizes[t]
        boxes[t, :2] = np.minimum(boxes[i, :2], boxes[j, :2])
        boxes[t, 2:] = np.maximum(boxes[i, 2:], boxes[j, 2:])
        members[t] = members[i] | members[j]
        level[t] = level[i] + level[j] + 1
        alive[i] = alive[j] = False
        alive[t] = True
        around = (neighbours[i] | neighbours[j]) - {i, j}
        for k in around:
            neighbours[k] -= {i, j}
            neighbours[k].add(t)
        neighbours[t] = around
        if around:
            others = np.fromiter(sorted(around), np.int64, len(around))
            for sim, k in zip((-similarity(t, others)).tolist(), others.tolist(), strict=True):
                heapq.heappush(heap, (sim, k, t))
        t += 1
    return members[:t], level[:t]


def _overlay(label_maps: Sequence[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Atoms, the cells of the overlay of the label maps: (HxW int64 atom map, per map atoms -> label)."""
    atoms = label_maps[0].astype(np.int64)
    n_atoms = int(atoms.max()) + 1
    atom_labels = [np.arange(n_atoms)]
    for labels in label_maps[1:]:
        n_labels = int(labels.max()) + 1
        key = atoms * n_labels + labels
        present = np.zeros(n_atoms * n_labels, bool)
        present[key.ravel()] = True
        kept = np.flatnonzero(present)
        renumber = np.cumsum(present) - 1
        atoms = renumber[key]
        n_atoms = len(kept)
        atom_labels = [al[kept // n_labels] for al in atom_labels] + [kept % n_labels]
    return atoms, atom_labels


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 2:
        raise BadInputError(
            "image", f"expected an HxWx3 (or HxW) uint8 array; got shape {image.shape} dtype {image.dtype}"
        )
    return np.ascontiguousarray(image)


def selective_search(image: np.ndarray, config: ProposalConfig | None = None) -> Proposals:
    """Selective-search mask proposals of an HxWx3 uint8 RGB image (HxW grey is accepted)."""
    config = config or ProposalConfig()
    image = _check_image(image)
    h, w, _ = image.shape
    label_maps, rows, levels, sources, source_of_rows = [], [], [], [], []
    for space in config.colour_spaces:
        colour = _colour_image(image, space)
        codes, n_codes = _pixel_codes(colour, space, config.colour_bins)
        for scale in config.scales:
            labels = felzenszwalb(colour, scale=scale, sigma=config.sigma, min_size=config.min_size)
            members, level = _hierarchy(labels, codes, n_codes, config.colour_bins, config.similarities)
            label_maps.append(labels)
            rows.append(members)
            levels.append(level)
            source_of_rows.append(np.full(len(level), len(sources), np.int16))
            sources.append(f"felzenszwalb k={scale:g} {space}")
    atoms, atom_labels = _overlay(label_maps)
    candidates = np.concatenate([m[:, al] for m, al in zip(rows, atom_labels, strict=True)])
    level = np.concatenate(levels)
    source = np.concatenate(source_of_rows)
    atom_area = np.bincount(atoms.ravel()).astype(np.float32)
    area = candidates.astype(np.float32) @ atom_area
    keep = (area >= config.min_area * h * w) & (area <= config.max_area * h * w)
    packed = np.packbits(candidates[keep], axis=1)
    _, first = np.unique(packed, axis=0, return_index=True)  # exact duplicates across hierarchies
    index = np.flatnonzero(keep)[np.sort(first)]
    candidates, level, source = candidates[index], level[index], source[index]
    weights = candidates.astype(np.float32)
    score = _SCORES[config.score](image, atoms, weights, level, config)
    order = np.argsort(-score, kind="stable")
    chosen = order[_suppress(weights[order], atom_area, config.dedup_iou, config.max_proposals)]
    return Proposals(
        masks=candidates[chosen][:, atoms],
        objectness=score[chosen].astype(np.float32),
        source=source[chosen],
        level=level[chosen],
        sources=tuple(sources),
    )


# --------------------------------------------------------------------------- objectness and dedup


def _boundary(image: np.ndarray, atoms: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per region (KxA float32 0/1 rows over atoms): pixel edges on its inner boundary, their summed Lab
    colour difference (image smoothed with sigma 1), and pixel edges on the image border; each K float32."""
    lab = cv2.GaussianBlur(cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32), (0, 0), 1.0)
    n_atoms = rows.shape[1]
    a = np.concatenate([atoms[:, :-1].ravel(), atoms[:-1, :].ravel()])
    b = np.concatenate([atoms[:, 1:].ravel(), atoms[1:, :].ravel()])
    cross = a != b
    step = np.concatenate(
        [
            np.linalg.norm(lab[:, :-1] - lab[:, 1:], axis=2).ravel(),
            np.linalg.norm(lab[:-1, :] - lab[1:, :], axis=2).ravel(),
        ]
    )[cross]
    a, b = a[cross], b[cross]
    out = []
    for weight in (np.ones(len(a), np.float32), step.astype(np.float32)):
        # sum over atom edges of w_ab |x_a - x_b| = x . degree - 2 x^T W x / 2 for 0/1 rows x
        graph = sparse.coo_matrix((weight, (a, b)), shape=(n_atoms, n_atoms)).tocsr()
        graph = graph + graph.T
        degree = np.asarray(graph.sum(axis=1)).ravel().astype(np.float32)
        inside = (graph @ rows.T).T
        out.append(rows @ degree - (inside * rows).sum(axis=1))
    border = np.concatenate([atoms[0], atoms[-1], atoms[:, 0], atoms[:, -1]])
    out.append(rows @ np.bincount(border, minlength=n_atoms).astype(np.float32))
    return tuple(out)


def _contrast_score(
    image: np.ndarray, atoms: np.ndarray, rows: np.ndarray, level: np.ndarray, config: ProposalConfig
) -> np.ndarray:
    """contrast x closure x compactness x size^(1/4); see the module docstring."""
    inner, strength, border = _boundary(image, atoms, rows)
    area = rows @ np.bincount(atoms.ravel()).astype(np.float32)
    perimeter = np.maximum(inner + border, 1.0)
    contrast_times_closure = strength / perimeter  # (strength / inner) * (inner / perimeter)
    compactness = np.minimum(16.0 * area / perimeter**2, 1.0)
    return contrast_times_closure * compactness * (area / atoms.size) ** 0.25


def _hierarchy_score(
    image: np.ndarray, atoms: np.ndarray, candidates: np.ndarray, level: np.ndarray, config: ProposalConfig
) -> np.ndarray:
    """Selective search's ranking: merge level times a uniform random factor (seeded); higher is better."""
    rng = np.random.default_rng(config.seed)
    return (level + 1) * rng.random(len(level))


_SCORES = {"contrast": _contrast_score, "hierarchy": _hierarchy_score}


def _suppress(rows: np.ndarray, weight: np.ndarray, iou: float, limit: int, chunk: int = 128) -> np.ndarray:
    """Greedy NMS of sorted KxA float32 0/1 rows (sets of weighted items) at IoU ``iou``: indices kept."""
    weighted = rows * weight
    area = weighted.sum(axis=1)
    kept: list[int] = []
    for start in range(0, len(rows), chunk):
        block = np.arange(start, min(start + chunk, len(rows)))
        cols = np.concatenate([np.asarray(kept, np.int64), block])
        inter = weighted[block] @ rows[cols].T
        over = inter / (area[block, None] + area[cols][None, :] - inter) > iou
        n_kept = len(kept)
        is_kept = np.zeros(len(cols), bool)
        is_kept[:n_kept] = True
        for r, k in enumerate(block.tolist()):
            if not (over[r] & is_kept).any():
                kept.append(k)
                is_kept[n_kept + r] = True
                if len(kept) == limit:
                    return np.asarray(kept, np.int64)
    return np.asarray(kept, np.int64)


# --------------------------------------------------------------------------- class-aware proposals


def class_aware_proposals(
    maps: np.ndarray,
    levels: Sequence[float] = (0.2, 0.35, 0.5, 0.65, 0.8),
    dedup_iou: float = 0.9,
    min_pixels: int = 1,
) -> Proposals:
    """Connected components of a CxHxW (or HxW) float map (CRMs or PRMs) thresholded at relative levels.

    Each map is divided by its maximum (maps with no positive value give nothing); every 8-connected
    component of ``map >= level`` with at least ``min_pixels`` pixels is a proposal whose objectness
    is its mean normalised response. Proposals with a better one at IoU above ``dedup_iou`` are dropped.
    """
    maps = np.asarray(maps, np.float32)
    if maps.ndim == 2:
        maps = maps[None]
    if maps.ndim != 3 or not np.isfinite(maps).all():
        raise BadInputError("maps", f"expected a finite CxHxW or HxW array; got shape {maps.shape}")
    if any(not 0.0 < lv <= 1.0 for lv in levels):
        raise BadInputError("levels", f"expected relative levels in (0, 1]; got {tuple(levels)}")
    h, w = maps.shape[1:]
    masks, scores, source, comp, sources = [], [], [], [], []
    for c, response in enumerate(maps):
        top = float(response.max())
        if top <= 0:
            continue
        response = response / top
        for lv in levels:
            components, n = ndimage.label(response >= lv, structure=np.ones((3, 3), bool))
            counts = np.bincount(components.ravel(), minlength=n + 1)
            means = np.bincount(components.ravel(), weights=response.ravel(), minlength=n + 1)
            for k in np.flatnonzero(counts[1:] >= min_pixels) + 1:
                masks.append(components == k)
                scores.append(means[k] / counts[k])
                source.append(len(sources))
                comp.append(k - 1)
            sources.append(f"class {c} level {lv:.2f}")
    if not masks:
        empty = np.zeros(0, np.float32)
        return Proposals(
            np.zeros((0, h, w), bool), empty, np.zeros(0, np.int16), np.zeros(0, np.int32), tuple(sources)
        )
    stack = np.asarray(masks)
    order = np.argsort(-np.asarray(scores), kind="stable")
    rows = stack[order].reshape(len(order), -1).astype(np.float32)
    chosen = order[_suppress(rows, np.ones(h * w, np.float32), dedup_iou, len(order))]
    return Proposals(
        masks=stack[chosen],
        objectness=np.asarray(scores, np.float32)[chosen],
        source=np.asarray(source, np.int16)[chosen],
        level=np.asarray(comp, np.int32)[chosen],
        sources=tuple(sources),
    )


# --------------------------------------------------------------------------- evaluation and storage


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every mask in ``a`` (KxHxW bool) with every mask in ``b`` (NxHxW bool): KxN float64."""
    fa = np.asarray(a, bool).reshape(len(a), -1).astype(np.float32)
    fb = np.asarray(b, bool).reshape(len(b), -1).astype(np.float32)
    inter = (fa @ fb.T).astype(np.float64)
    union = fa.sum(1, dtype=np.float64)[:, None] + fb.sum(1, dtype=np.float64)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def best_overlaps(proposal_masks: np.ndarray, gt_masks: np.ndarray) -> np.ndarray:
    """N float64: for each ground-truth mask (NxHxW bool), its best IoU with a proposal (KxHxW bool)."""
    if len(gt_masks) == 0:
        return np.zeros(0)
    if len(proposal_masks) == 0:
        return np.zeros(len(gt_masks))
    if proposal_masks.shape[1:] != gt_masks.shape[1:]:
        raise BadInputError(
            "masks",
            f"proposals {proposal_masks.shape[1:]} and ground truth {gt_masks.shape[1:]} differ in size",
        )
    return mask_iou(gt_masks, proposal_masks).max(axis=1)


def average_best_overlap(proposal_masks: np.ndarray, gt_masks: np.ndarray) -> tuple[float, float]:
    """(ABO, recall at IoU 0.5) of KxHxW bool proposals against NxHxW bool ground truth; nan if N = 0.

    Over a dataset, pool :func:`best_overlaps` of every image instead of averaging per-image values.
    """
    best = best_overlaps(np.asarray(proposal_masks, bool), np.asarray(gt_masks, bool))
    if len(best) == 0:
        return float("nan"), float("nan")
    return float(best.mean()), float((best >= 0.5).mean())


def to_rle(proposals: Proposals | np.ndarray) -> list[dict]:
    """Proposals (or KxHxW bool masks) -> K compressed RLE dicts, ``counts`` as str (JSON-ready)."""
    masks = proposals.masks if isinstance(proposals, Proposals) else np.asarray(proposals, bool)
    if len(masks) == 0:
        return []
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0), dtype=np.uint8))
    return [{"size": [int(v) for v in r["size"]], "counts": r["counts"].decode("ascii")} for r in rles]


def from_rle(rles: Sequence[dict], shape: tuple[int, int] = (0, 0)) -> np.ndarray:
    """K compressed RLE dicts -> KxHxW bool (``shape`` gives H, W when the list is empty)."""
    if len(rles) == 0:
        return np.zeros((0, *shape), bool)
    coded = [
        {
            "size": list(r["size"]),
            "counts": r["counts"].encode("ascii") if isinstance(r["counts"], str) else r["counts"],
        }
        for r in rles
    ]
    return mask_utils.decode(coded).transpose(2, 0, 1).astype(bool)


def measure_speed(image: np.ndarray, config: ProposalConfig | None = None, repeats: int = 3) -> dict:
    """Seconds of :func:`selective_search` and of one felzenszwalb call (first scale, RGB), best of repeats.

    Returns {"selective_search_s", "felzenszwalb_s", "ratio", "proposals"}.
    """
    config = config or ProposalConfig()
    image = _check_image(image)

    def best(fn) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    fz = best(
        lambda: felzenszwalb(image, scale=config.scales[0], sigma=config.sigma, min_size=config.min_size)
    )
    ss = best(lambda: selective_search(image, config))
    return {
        "selective_search_s": ss,
        "felzenszwalb_s": fz,
        "ratio": ss / fz,
        "proposals": len(selective_search(image, config)),
    }
