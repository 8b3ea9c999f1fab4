"""The synthetic ``shapes`` benchmark: tagged images with exact instance masks, deterministic by seed.

Each image holds 0 to 6 objects of 4 classes (disc, square, triangle, star) in random colours, among
distractors of no class (rings, crosses) on a textured, cluttered background, under an illumination
gradient and sensor noise. Objects may occlude each other; placements that would leave any object
less than ``min_visible`` visible are re-drawn, so every object in the picture is in the ground truth
(or is a distractor). Image ``index`` of a config is ``generate(config, index)``: it depends only on
``(config, index)``, so any image can be regenerated on its own.

Knobs of :class:`ShapesConfig` (default | teaching preset):

==================  =======================================================  ============  ========
knob                meaning                                                  default       teaching
==================  =======================================================  ============  ========
seed                dataset seed; image i uses default_rng([seed, i])        0             0
height, width       image size in pixels                                     160, 160      160, 160
classes             shape classes, a subset of SHAPE_CLASSES                 all 4         all 4
min/max_size        disc diameter, square/triangle side, star diameter (px)  18, 50        24, 50
min/max_instances   objects of a class per image, uniform                    0, 6          1, 4
distractors         (min, max) rings and crosses of no class                 (1, 3)        (0, 0)
background          "textured" (smoothed noise) or "plain" (one colour)      textured      plain
lines, blobs        (min, max) random lines / translucent ellipses           (2, 6),(2,5)  (0, 0)
occlusion           let later objects cover earlier ones                     True          False
min_visible         smallest visible fraction of an object's area            0.4           0.4
min_area            smallest visible area of an object (px)                  60            60
rotate              random rotation of squares, triangles, stars, crosses    True          False
min_contrast        RGB distance of an object to what it is drawn over       60            100
illumination        largest relative strength of the brightness gradient     0.35          0.0
noise_std           largest std of the Gaussian noise (0..255 scale)         8.0           0.0
==================  =======================================================  ============  ========
"""

from __future__ import annotations

import colorsys
import dataclasses
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from wsseg.data.coco import annotations_for_image, coco_dict
from wsseg.data.tagged_folder import write_tagged_folder
from wsseg.errors import BadInputError
from wsseg.fileio import write_json

SHAPE_CLASSES: tuple[str, ...] = ("disc", "square", "triangle", "star")
DISTRACTOR_KINDS: tuple[str, ...] = ("ring", "cross")
_SHIFT = 4  # fixed-point bits for cv2.fillPoly vertices
_COLOUR_TRIES = 12


@dataclass(frozen=True)
class ShapesConfig:
    """How the shapes benchmark is drawn; see the module docstring for a table of the knobs."""

    seed: int = 0
    height: int = 160
    width: int = 160
    classes: tuple[str, ...] = SHAPE_CLASSES
    min_size: int = 18
    max_size: int = 50
    min_instances: int = 0
    max_instances: int = 6
    distractors: tuple[int, int] = (1, 3)
    background: str = "textured"
    lines: tuple[int, int] = (2, 6)
    blobs: tuple[int, int] = (2, 5)
    occlusion: bool = True
    min_visible: float = 0.4
    min_area: int = 60
    rotate: bool = True
    min_contrast: float = 60.0
    illumination: float = 0.35
    noise_std: float = 8.0
    placement_tries: int = 30

    def __post_init__(self) -> None:
        checks = [
            (
                set(self.classes) <= set(SHAPE_CLASSES) and len(self.classes) > 0,
                f"classes within {SHAPE_CLASSES}",
            ),
            (len(set(self.classes)) == len(self.classes), "classes without repeats"),
            (self.height >= 32 and self.width >= 32, "height and width of at least 32"),
            (
                4 <= self.min_size <= self.max_size <= min(self.height, self.width),
                "4 <= min_size <= max_size <= image side",
            ),
            (0 <= self.min_instances <= self.max_instances, "0 <= min_instances <= max_instances"),
            (self.background in ("textured", "plain"), "background 'textured' or 'plain'"),
            (0.0 < self.min_visible <= 1.0, "min_visible in (0, 1]"),
            (self.illumination >= 0 and self.noise_std >= 0, "illumination and noise_std >= 0"),
        ]
        for pair in (self.distractors, self.lines, self.blobs):
            checks.append(
                (len(pair) == 2 and 0 <= pair[0] <= pair[1], "(min, max) ranges with 0 <= min <= max")
            )
        for ok, expected in checks:
            if not ok:
                raise BadInputError("ShapesConfig", f"expected {expected}; got {self}")

    @classmethod
    def teaching(cls, seed: int = 0) -> ShapesConfig:
        """An easier preset for teaching: plain background, no clutter, distractors, occlusion or noise."""
        return cls(
            seed=seed,
            min_size=24,
            min_instances=1,
            max_instances=4,
            distractors=(0, 0),
            background="plain",
            lines=(0, 0),
            blobs=(0, 0),
            occlusion=False,
            rotate=False,
            min_contrast=100.0,
            illumination=0.0,
            noise_std=0.0,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ShapesConfig:
        """Inverse of :meth:`to_dict` (lists become tuples); unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise BadInputError(
                "shapes config", f"unknown keys {sorted(unknown)}; expected some of {sorted(names)}"
            )
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


@dataclass(frozen=True)
class ShapesSample:
    """One generated image and its ground truth (ground truth is for evaluation only).

    image: HxWx3 uint8 RGB, what a model sees. clean_image: HxWx3 uint8 before illumination and noise.
    masks: NxHxW bool, the visible part of each instance (disjoint). labels: N int64 indices into
    ``config.classes``. colors: Nx3 uint8, each instance's colour in ``clean_image``. centers: Nx2
    float64, x, y of each mask's centroid. tags: sorted class names present. distractor_masks: MxHxW
    bool, visible parts of the distractors (disjoint from ``masks``). visible: N float64 in
    [min_visible, 1], the fraction of each instance's whole shape left visible by occluders and the
    image border.
    """

    index: int
    image: np.ndarray
    clean_image: np.ndarray
    masks: np.ndarray
    labels: np.ndarray
    colors: np.ndarray
    centers: np.ndarray
    tags: tuple[str, ...]
    distractor_masks: np.ndarray
    visible: np.ndarray

    @property
    def boxes(self) -> np.ndarray:
        """Nx4 float32 xyxy boxes of the masks (x2, y2 exclusive)."""
        out = np.zeros((len(self.masks), 4), np.float32)
        for k, mask in enumerate(self.masks):
            ys, xs = np.nonzero(mask)
            out[k] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        return out


# --------------------------------------------------------------------------- shape outlines


def _polygon(kind: str, size: float, angle: float, rng: np.random.Generator) -> np.ndarray:
    """Kx2 vertices (x, y) around the origin for the polygonal kinds."""
    half = size / 2
    if kind == "square":
        points = [(-half, -half), (half, -half), (half, half), (-half, half)]
    elif kind == "triangle":
        radius = size / math.sqrt(3)
        points = [(radius * math.cos(a), radius * math.sin(a)) for a in np.radians([-90, 30, 150])]
    elif kind == "star":
        inner = half * 0.45
        points = [
            ((half if k % 2 == 0 else inner) * math.cos(a), (half if k % 2 == 0 else inner) * math.sin(a))
            for k, a in enumerate(np.radians(np.arange(10) * 36 - 90))
        ]
    elif kind == "cross":
        arm = size * rng.uniform(0.12, 0.2)
        points = [
            (-arm, -half), (arm, -half), (arm, -arm), (half, -arm), (half, arm), (arm, arm),
            (arm, half), (-arm, half), (-arm, arm), (-half, arm), (-half, -arm), (-arm, -arm),
        ]  # fmt: skip
    else:
        raise ValueError(kind)
    cos, sin = math.cos(angle), math.sin(angle)
    pts = np.asarray(points, np.float64)
    return pts @ np.array([[cos, sin], [-sin, cos]])


def _outline(
    kind: str, size: float, angle: float, rng: np.random.Generator
) -> Callable[[float, float, int], np.ndarray]:
    """A function (centre x, centre y in a patch, patch side) -> patch-side^2 bool mask of the shape."""
    if kind in ("disc", "ring"):
        outer = size / 2
        inner = outer * rng.uniform(0.45, 0.65) if kind == "ring" else -1.0

        def draw_round(cx: float, cy: float, side: int) -> np.ndarray:
            grid = np.arange(side, dtype=np.float64)
            d2 = (grid[None, :] - cx) ** 2 + (grid[:, None] - cy) ** 2
            return (d2 <= outer**2) & (d2 >= inner**2 if inner > 0 else True)

        return draw_round
    polygon = _polygon(kind, size, angle, rng)

    def draw_polygon(cx: float, cy: float, side: int) -> np.ndarray:
        canvas = np.zeros((side, side), np.uint8)
        pts = np.round((polygon + (cx, cy)) * (1 << _SHIFT)).astype(np.int32)
        cv2.fillPoly(canvas, [pts], 1, lineType=cv2.LINE_8, shift=_SHIFT)
        return canvas.astype(bool)

    return draw_polygon


# --------------------------------------------------------------------------- drawing


def _random_colour(rng: np.random.Generator, s_range=(0.25, 1.0), v_range=(0.25, 1.0)) -> np.ndarray:
    rgb = colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(*s_range), rng.uniform(*v_range))
    return np.round(np.asarray(rgb) * 255).astype(np.uint8)


def _background(config: ShapesConfig, rng: np.random.Generator) -> np.ndarray:
    h, w = config.height, config.width
    base = _random_colour(rng, (0.0, 0.8), (0.2, 0.9)).astype(np.float32)
    if config.background == "plain":
        return np.broadcast_to(base, (h, w, 3)).astype(np.uint8)
    # smoothed noise at three scales, summed on a 40x40 grid, then one upsampling to the image size
    fine = 40
    texture = base + rng.normal(0, 8.0, (fine, fine, 3)).astype(np.float32)
    for cells, amplitude in ((4, 40.0), (12, 18.0)):
        noise = rng.normal(0, amplitude, (cells, cells, 3)).astype(np.float32)
        texture += cv2.resize(noise, (fine, fine), interpolation=cv2.INTER_CUBIC)
    image = cv2.resize(texture, (w, h), interpolation=cv2.INTER_CUBIC)
    image = np.clip(image, 0, 255).astype(np.uint8)
    for _ in range(rng.integers(config.blobs[0], config.blobs[1] + 1)):
        layer = image.copy()
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        major = int(rng.integers(8, max(9, config.max_size // 2 + 6)))
        axes = (major, max(3, int(major * rng.uniform(0.25, 0.6))))
        colour = tuple(int(c) for c in _random_colour(rng))
        cv2.ellipse(layer, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1, cv2.LINE_8)
        alpha = rng.uniform(0.3, 0.6)
        image = cv2.addWeighted(layer, alpha, image, 1 - alpha, 0)
    for _ in range(rng.integers(config.lines[0], config.lines[1] + 1)):
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p2 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        colour = tuple(int(c) for c in _random_colour(rng))
        cv2.line(image, p1, p2, colour, int(rng.integers(1, 4)), cv2.LINE_8)
    return image


@dataclass
class _Placed:
    kind: str
    label: int  # class index, or -1 for a distractor
    colour: np.ndarray
    full_area: int
    visible: int


def _place(
    config: ShapesConfig,
    rng: np.random.Generator,
    outline: Callable[[float, float, int], np.ndarray],
    size: int,
    owner: np.ndarray,
    placed: list[_Placed],
) -> tuple[np.ndarray, tuple[slice, slice], int] | None:
    """Find a position that keeps every object visible enough: (clipped mask, image slices, full area)."""
    h, w = config.height, config.width
    side = int(math.ceil(size * 1.5)) + 3
    for _ in range(config.placement_tries):
        cx, cy = rng.uniform(size * 0.3, w - size * 0.3), rng.uniform(size * 0.3, h - size * 0.3)
        x0, y0 = int(cx) - side // 2, int(cy) - side // 2
        patch = outline(cx - x0, cy - y0, side)
        full_area = int(patch.sum())
        ys = slice(max(y0, 0), min(y0 + side, h))
        xs = slice(max(x0, 0), min(x0 + side, w))
        mask = patch[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]
        area = int(mask.sum())
        if area < config.min_visible * full_area or area < config.min_area:
            continue
        covered = np.bincount(owner[ys, xs][mask] + 1, minlength=len(placed) + 1)[1:]
        if not config.occlusion and covered.any():
            continue
        if all(
            obj.visible - lost >= max(config.min_visible * obj.full_area, config.min_area)
            for obj, lost in zip(placed, covered, strict=True)
            if lost
        ):
            return mask, (ys, xs), full_area
    return None


def _pick_colour(
    config: ShapesConfig, rng: np.random.Generator, under: np.ndarray, colours: list[np.ndarray]
) -> np.ndarray:
    """A random colour far enough (RGB distance) from the mean of what it covers and from covered objects."""
    refs = np.asarray([under.reshape(-1, 3).mean(0), *colours], np.float64)
    best, best_distance = None, -1.0
    for _ in range(_COLOUR_TRIES):
        colour = _random_colour(rng)
        distance = float(np.linalg.norm(refs - colour, axis=1).min())
        if distance >= config.min_contrast:
            return colour
        if distance > best_distance:
            best, best_distance = colour, distance
    return best


def generate(config: ShapesConfig, index: int) -> ShapesSample:
    """Draw image ``index`` of the dataset ``config`` (depends on nothing else)."""
    rng = np.random.default_rng([config.seed, index])
    h, w = config.height, config.width
    image = _background(config, rng)
    owner = np.full((h, w), -1, np.int16)
    n_instances = int(rng.integers(config.min_instances, config.max_instances + 1))
    n_distractors = int(rng.integers(config.distractors[0], config.distractors[1] + 1))
    objects = [(config.classes[i], i) for i in rng.integers(0, len(config.classes), n_instances)]
    objects += [(DISTRACTOR_KINDS[i], -1) for i in rng.integers(0, len(DISTRACTOR_KINDS), n_distractors)]
    placed: list[_Placed] = []
    for pos in rng.permutation(len(objects)):
        kind, label = objects[pos]
        size = int(rng.integers(config.min_size, config.max_size + 1))
        rotates = config.rotate and kind != "disc"
        angle = rng.uniform(0, 2 * math.pi) if rotates else 0.0
        found = _place(config, rng, _outline(kind, size, angle, rng), size, owner, placed)
        if found is None:
            continue
        mask, (ys, xs), full_area = found
        region, region_owner = image[ys, xs], owner[ys, xs]
        covered = np.unique(region_owner[mask])
        colour = _pick_colour(config, rng, region[mask], [placed[k].colour for k in covered if k >= 0])
        for k, lost in zip(*np.unique(region_owner[mask], return_counts=True), strict=True):
            if k >= 0:
                placed[k].visible -= int(lost)
        region[mask] = colour
        region_owner[mask] = len(placed)
        placed.append(_Placed(kind, label, colour, full_area, int(mask.sum())))

    clean = image
    masks = [owner == k for k, obj in enumerate(placed) if obj.label >= 0]
    distractors = [owner == k for k, obj in enumerate(placed) if obj.label < 0]
    labels = np.asarray([obj.label for obj in placed if obj.label >= 0], np.int64)
    colours = np.asarray([obj.colour for obj in placed if obj.label >= 0], np.uint8).reshape(-1, 3)
    centers = np.asarray([(np.nonzero(m)[1].mean(), np.nonzero(m)[0].mean()) for m in masks], np.float64)
    return ShapesSample(
        index=index,
        image=_degrade(config, rng, clean),
        clean_image=clean,
        masks=np.asarray(masks, bool).reshape(-1, h, w),
        labels=labels,
        colors=colours,
        centers=centers.reshape(-1, 2),
        tags=tuple(sorted({config.classes[i] for i in labels})),
        distractor_masks=np.asarray(distractors, bool).reshape(-1, h, w),
        visible=np.asarray([o.visible / o.full_area for o in placed if o.label >= 0], np.float64),
    )


def _degrade(config: ShapesConfig, rng: np.random.Generator, clean: np.ndarray) -> np.ndarray:
    """Multiply by a linear brightness ramp in a random direction, then add Gaussian noise."""
    if config.illumination == 0 and config.noise_std == 0:
        return clean.copy()
    h, w = clean.shape[:2]
    theta = rng.uniform(0, 2 * math.pi)
    strength = rng.uniform(0, config.illumination)
    along_x = (np.arange(w, dtype=np.float32) - w / 2) * math.cos(theta)
    along_y = (np.arange(h, dtype=np.float32) - h / 2) * math.sin(theta)
    ramp = along_y[:, None] + along_x[None, :]
    gain = 1 + (strength / max(float(np.abs(ramp).max()), 1.0)) * ramp
    sigma = rng.uniform(0.5, 1.0) * config.noise_std
    noisy = rng.standard_normal(clean.shape, dtype=np.float32)
    noisy *= sigma
    noisy += clean * gain[:, :, None]
    np.rint(noisy, out=noisy)
    return np.clip(noisy, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- dataset on disk


def iter_samples(config: ShapesConfig, n: int, start: int = 0) -> Iterator[ShapesSample]:
    """Samples ``start .. start+n-1`` of ``config``."""
    for index in range(start, start + n):
        yield generate(config, index)


def sample_filename(index: int) -> str:
    """File name of image ``index`` in a written dataset."""
    return f"shapes_{index:05d}.png"


def write_shapes_dataset(
    out_dir: str | os.PathLike,
    n: int,
    config: ShapesConfig = ShapesConfig(),  # noqa: B008 (frozen, immutable)
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write ``n`` images as a tagged folder plus ground truth, and return ``out_dir``.

    Layout: ``images/shapes_00000.png ...`` and ``tags.csv`` (the training input), ``annotations.json``
    (COCO ground truth with RLE masks, image id = index + 1, for evaluation only) and
    ``shapes_config.json`` (the config and ``n``, enough to regenerate everything).
    ``progress(done, n)`` is called after each image.
    """
    out_dir = Path(out_dir)
    images: list[dict] = []
    annotations: list[dict] = []

    def items() -> Iterator[tuple[str, np.ndarray, tuple[str, ...]]]:
        for sample in iter_samples(config, n):
            name = sample_filename(sample.index)
            image_id = sample.index + 1
            images.append({"id": image_id, "file_name": name, "width": config.width, "height": config.height})
            annotations.extend(
                annotations_for_image(image_id, sample.masks, sample.labels, None, len(annotations) + 1)
            )
            yield name, sample.image, sample.tags
            if progress is not None:
                progress(len(images), n)

    write_json(out_dir / "shapes_config.json", {"n": n, "config": config.to_dict()})
    write_tagged_folder(out_dir, items())
    write_json(out_dir / "annotations.json", coco_dict(images, config.classes, annotations))
    return out_dir
