"""Class-agnostic object proposals: candidate instance masks for the pseudo-mask stage (class-aware
ones, from thresholded maps: ``wsseg.methods.map_proposals``; stored as RLE: ``wsseg.data.coco.encode_masks``).

They follow selective search (Uijlings et al., IJCV 2013): superpixels from
Felzenszwalb-Huttenlocher graph segmentation, one set per (scale, colour space); the two most similar
adjacent regions are merged, again and again, until one region is left; every region on the way
(superpixels included) is a candidate mask. Similarity is a sum of terms, each in [0, 1]:

- colour: intersection of L1-normalised colour histograms (``colour_bins`` per channel);
- texture: intersection of L1-normalised histograms of gradient orientation (8 bins) x gradient
  magnitude (4 bins) per channel of the smoothed image;
- size: 1 - (size_i + size_j) / image area, so small regions merge first;
- fill: 1 - (bbox(i u j) - size_i - size_j) / image area, so regions that fill each other's gaps merge first.

A region is a set of superpixels of its hierarchy, so its area and its boundary (length, summed
contrast, length on the image border) are sums over superpixels and superpixel pairs. To compare
regions of different hierarchies, masks are rows over *atoms*, the cells of the overlay of every
superpixel map; overlaps (for the NMS) are matrix products of those rows.

Objectness (``score="contrast"``, the default) rewards a region whose outline is a strong, closed,
simple edge::

    contrast x closure x compactness x (area / image area) ** 0.25

contrast: mean Lab colour difference (image smoothed with sigma 1) across the pixel edges between
the region and the rest of the image; closure: the fraction of the perimeter that is not on the image
border (the background touches the border); compactness: min(1, 16 area / perimeter^2), the area over
that of a square of the same pixel-edge perimeter (thin strips such as lines score low); the size
factor is a weak prior for larger regions, whose mean contrast is measured over more pixels.
On 100 default ``shapes`` images it ranks objects first: average best overlap of the top 10 / 25 / 50
proposals is 0.59 / 0.79 / 0.90, against 0.14 / 0.31 / 0.55 for ``score="hierarchy"``, selective
search's own ranking (the region's merge level times a random factor, seeded, so deterministic).
Proposals whose mask IoU with a better-ranked one exceeds ``dedup_iou`` are dropped (greedy NMS).
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import cv2
import numpy as np
from scipy import ndimage
from skimage.segmentation import felzenszwalb

from wsseg.errors import BadInputError

COLOUR_SPACES: dict[str, int | None] = {"rgb": None, "hsv": cv2.COLOR_RGB2HSV, "lab": cv2.COLOR_RGB2LAB}
SIMILARITIES: tuple[str, ...] = ("colour", "texture", "size", "fill")
_ORIENTATIONS, _MAGNITUDES = 8, 4
_MAGNITUDE_EDGES = np.array([2.0, 6.0, 16.0], np.float32)  # gradient magnitude bins, 0..255 scale


@dataclass(frozen=True)
class ProposalConfig:
    """How selective search runs.

    Defaults: 2 colour spaces x 3 scales = 6 hierarchies, which keeps a call under the time of 10
    felzenszwalb calls (about 8x on a 256x256 image); on 100 default ``shapes`` images they give an
    average best overlap of 0.956 (adding "hsv" gives about +0.005 for 1.5x the time). sigma and
    min_size are the usual Felzenszwalb values, 25 colour bins as in selective search.

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
    colour_spaces: tuple[str, ...] = ("rgb", "lab")
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
    # orientation octant from the signs and the larger component; magnitude bin from squared edges
    octant = 4 * (gy < 0) + 2 * (gx < 0) + (np.abs(gy) > np.abs(gx))
    squared = gx * gx + gy * gy
    magnitude = sum((squared > edge * edge).astype(np.int32) for edge in _MAGNITUDE_EDGES)
    texture = octant * _MAGNITUDES + magnitude + np.arange(3) * (_ORIENTATIONS * _MAGNITUDES)
    codes[:, 3:] = texture.reshape(-1, 3) + 3 * bins
    return codes, 3 * bins + 3 * _ORIENTATIONS * _MAGNITUDES


class _Regions(NamedTuple):
    """Measures of R regions (one hierarchy's, or several hierarchies' concatenated)."""

    level: np.ndarray  # R int32, merges inside each region
    area: np.ndarray  # R float32, pixels
    inner: np.ndarray  # R float32, pixel edges between the region and the rest of the image
    strength: np.ndarray  # R float32, summed contrast over those pixel edges
    border: np.ndarray  # R float32, pixel edges between the region and the outside of the image


def _pixel_pairs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both sides of every 4-neighbour pixel pair of an HxW array, horizontal pairs first."""
    first = np.concatenate([values[:, :-1].ravel(), values[:-1, :].ravel()])
    second = np.concatenate([values[:, 1:].ravel(), values[1:, :].ravel()])
    return first, second


def _hierarchy(
    labels: np.ndarray,
    codes: np.ndarray,
    n_codes: int,
    colour_bins: int,
    terms: Sequence[str],
    contrast: np.ndarray,
) -> tuple[np.ndarray, _Regions]:
    """Greedy merging of the superpixels of ``labels`` (HxW int, 0..n-1), most similar adjacent pair first.

    ``codes`` (HWx6) are the pixels' histogram bins (see :func:`_pixel_codes`) and ``contrast`` the
    colour difference of every pixel pair in :func:`_pixel_pairs` order. Returns (members, regions) for
    all R = 2n-1 regions, the n superpixels first, then one per merge; members is Rxn bool, the
    superpixels in each region.
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
    boxes = np.zeros((n_regions, 4))  # -y0, -x0, y1, x1 (y1, x1 exclusive): a union box is a maximum
    for k, sl in enumerate(ndimage.find_objects(labels + 1)):
        boxes[k] = -sl[0].start, -sl[1].start, sl[0].stop, sl[1].stop
    size_w, fill_w = float("size" in terms), float("fill" in terms)

    def similarity(i: int | np.ndarray, j: np.ndarray) -> np.ndarray:
        both = sizes[i] + sizes[j]
        box = np.maximum(boxes[i], boxes[j])
        spread = (box[:, 0] + box[:, 2]) * (box[:, 1] + box[:, 3])
        penalty = (size_w * both + fill_w * (spread - both)) / total
        return np.minimum(feats[i], feats[j]).sum(axis=-1) + (size_w + fill_w - penalty)

    a, b = _pixel_pairs(labels)
    key = np.minimum(a, b) * n + np.maximum(a, b)
    pair_length = np.bincount(key, minlength=n * n)
    pair_strength = np.bincount(key, weights=contrast, minlength=n * n)
    pairs = np.flatnonzero(pair_length)
    pairs = pairs[pairs // n != pairs % n]
    first, second = pairs // n, pairs % n
    neighbours: list[set[int]] = [set() for _ in range(n_regions)]
    for i, j in zip(first.tolist(), second.tolist(), strict=True):
        neighbours[i].add(j)
        neighbours[j].add(i)
    heap = list(zip((-similarity(first, second)).tolist(), first.tolist(), second.tolist(), strict=True))
    heapq.heapify(heap)
    alive = [True] * n + [False] * (n - 1)
    size_of = size.tolist() + [0.0] * (n - 1)
    members = np.zeros((n_regions, n), bool)
    members[np.arange(n), np.arange(n)] = True
    level = np.zeros(n_regions, np.int32)
    t = n
    while heap and t < n_regions:
        _, i, j = heapq.heappop(heap)
        if not (alive[i] and alive[j]):
            continue
        size_of[t] = sizes[t] = size_of[i] + size_of[j]
        np.add(feats[i] * (size_of[i] / size_of[t]), feats[j] * (size_of[j] / size_of[t]), out=feats[t])
        np.maximum(boxes[i], boxes[j], out=boxes[t])
        np.logical_or(members[i], members[j], out=members[t])
        level[t] = level[i] + level[j] + 1
        alive[i] = alive[j] = False
        alive[t] = True
        around = (neighbours[i] | neighbours[j]) - {i, j}
        for k in around:
            neighbours[k] -= {i, j}
            neighbours[k].add(t)
        neighbours[t] = around
        if around:
            others = sorted(around)
            for sim, k in zip((-similarity(t, np.asarray(others))).tolist(), others, strict=True):
                heapq.heappush(heap, (sim, k, t))
        t += 1
    members = members[:t]
    cut = (members[:, first] != members[:, second]).astype(np.float32)
    outside = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    return members, _Regions(
        level=level[:t],
        area=sizes[:t].astype(np.float32),
        inner=cut @ pair_length[pairs].astype(np.float32),
        strength=cut @ pair_strength[pairs].astype(np.float32),
        border=members.astype(np.float32) @ np.bincount(outside, minlength=n).astype(np.float32),
    )


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


def check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise BadInputError(
            "image", f"expected an HxWx3 (or HxW) uint8 array; got shape {image.shape} dtype {image.dtype}"
        )
    if min(image.shape[:2]) < 2:
        height, width = image.shape[:2]
        raise BadInputError(
            "image", f"{width}x{height} pixels is too small: selective search needs at least 2x2"
        )
    return np.ascontiguousarray(image)


def selective_search(image: np.ndarray, config: ProposalConfig | None = None) -> Proposals:
    """Selective-search mask proposals of an HxWx3 uint8 RGB image (HxW grey is accepted)."""
    config = config or ProposalConfig()
    image = check_image(image)
    h, w, _ = image.shape
    lab = cv2.GaussianBlur(cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32), (0, 0), 1.0)
    contrast = np.concatenate(
        [
            np.linalg.norm(lab[:, :-1] - lab[:, 1:], axis=2).ravel(),
            np.linalg.norm(lab[:-1, :] - lab[1:, :], axis=2).ravel(),
        ]
    )
    label_maps, members, hierarchies, sources = [], [], [], []
    for space in config.colour_spaces:
        colour = _colour_image(image, space)
        codes, n_codes = _pixel_codes(colour, space, config.colour_bins)
        for scale in config.scales:
            labels = felzenszwalb(colour, scale=scale, sigma=config.sigma, min_size=config.min_size)
            inside, regions = _hierarchy(
                labels, codes, n_codes, config.colour_bins, config.similarities, contrast
            )
            label_maps.append(labels)
            members.append(inside)
            hierarchies.append(regions)
            sources.append(f"felzenszwalb k={scale:g} {space}")
    regions = _Regions(*(np.concatenate(column) for column in zip(*hierarchies, strict=True)))
    source = np.repeat(np.arange(len(hierarchies), dtype=np.int16), [len(r.level) for r in hierarchies])
    keep = (regions.area >= config.min_area * h * w) & (regions.area <= config.max_area * h * w)
    score = _SCORES[config.score](regions, h * w, config)
    order = np.flatnonzero(keep)[np.argsort(-score[keep], kind="stable")]
    # every region as a 0/1 row over atoms, the cells of the overlay of all superpixel maps
    atoms, atom_labels = _overlay(label_maps)
    offsets = np.cumsum([0] + [len(r.level) for r in hierarchies])

    def rows(indices: np.ndarray) -> np.ndarray:
        out = np.empty((len(indices), len(atom_labels[0])), np.float32)
        which = order[indices]
        for k, (inside, leaf) in enumerate(zip(members, atom_labels, strict=True)):
            mine = (which >= offsets[k]) & (which < offsets[k + 1])
            out[mine] = inside[which[mine] - offsets[k]][:, leaf]
        return out

    atom_area = np.bincount(atoms.ravel()).astype(np.float32)
    kept = suppress_overlaps(rows, len(order), atom_area, config.dedup_iou, config.max_proposals)
    chosen = order[kept]
    return Proposals(
        masks=rows(kept).astype(bool)[:, atoms],
        objectness=score[chosen].astype(np.float32),
        source=source[chosen],
        level=regions.level[chosen],
        sources=tuple(sources),
    )


# --------------------------------------------------------------------------- objectness and dedup


def _contrast_score(regions: _Regions, image_area: int, config: ProposalConfig) -> np.ndarray:
    """contrast x closure x compactness x size^(1/4); see the module docstring."""
    perimeter = np.maximum(regions.inner + regions.border, 1.0)
    contrast_times_closure = regions.strength / perimeter  # (strength / inner) * (inner / perimeter)
    compactness = np.minimum(16.0 * regions.area / perimeter**2, 1.0)
    return contrast_times_closure * compactness * (regions.area / image_area) ** 0.25


def _hierarchy_score(regions: _Regions, image_area: int, config: ProposalConfig) -> np.ndarray:
    """Selective search's ranking: merge level times a uniform random factor (seeded); higher is better."""
    rng = np.random.default_rng(config.seed)
    return (regions.level + 1) * rng.random(len(regions.level))


_SCORES = {"contrast": _contrast_score, "hierarchy": _hierarchy_score}


def suppress_overlaps(
    rows: Callable[[np.ndarray], np.ndarray],
    count: int,
    weight: np.ndarray,
    iou: float,
    limit: int,
    chunk: int = 128,
) -> np.ndarray:
    """Greedy NMS at IoU ``iou`` of ``count`` sets ranked best first, at most ``limit`` kept: their indices.

    ``rows(indices)`` gives those sets as float32 0/1 rows over items of area ``weight``; rows are only
    asked for as far down the ranking as the NMS gets.
    """
    kept_rows = np.zeros((0, len(weight)), np.float32)
    kept_area = np.zeros(0, np.float32)
    kept: list[int] = []
    for start in range(0, count, chunk):
        block = rows(np.arange(start, min(start + chunk, count)))
        weighted = block * weight
        area = weighted.sum(axis=1)
        both = np.concatenate([kept_rows, block])
        inter = weighted @ both.T
        over = inter > iou * (area[:, None] + np.concatenate([kept_area, area])[None, :] - inter)
        is_kept = np.zeros(len(both), bool)
        is_kept[: len(kept_rows)] = True
        for r in range(len(block)):
            if not (over[r] & is_kept).any():
                kept.append(start + r)
                is_kept[len(kept_rows) + r] = True
                if len(kept) == limit:
                    return np.asarray(kept, np.int64)
        kept_rows = both[is_kept]
        kept_area = np.concatenate([kept_area, area[is_kept[len(kept_area) :]]])
    return np.asarray(kept, np.int64)
