"""Loaders for the real benchmark datasets, read in place (never copied) and one image at a time.

The data root is, in order: the ``root`` argument, the ``WSSEG_DATA`` environment variable, or
``../shared/data`` next to the repository. It holds ``nuclei-dsb2018/``, ``camvid/`` and
``coco-train100/`` (see ``shared/data/README.md``). Their masks and label maps are ground truth for evaluation only; the
weak labels a model may train on are the ``tags``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from wsseg.data.coco import CocoDataset, read_coco
from wsseg.data.images import read_image
from wsseg.errors import BadInputError, DataNotFoundError

ENV_VAR = "WSSEG_DATA"
NUCLEI_DIR = "nuclei-dsb2018"
NUCLEI_CLASS = "nucleus"
CAMVID_DIR = "camvid"
CAMVID_CLASSES: tuple[str, ...] = (
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist",
)  # fmt: skip
"""CamVid class names; label value c is CAMVID_CLASSES[c]."""
COCO_DIR = "coco-train100"
CAMVID_IGNORE = 11
"""Label value of unlabelled CamVid pixels (ignored in tags and metrics)."""


def default_data_root() -> Path:
    """``$WSSEG_DATA`` if set, else ``../shared/data`` relative to the repository root."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _dataset_dir(root: str | os.PathLike | None, name: str, expected: str) -> Path:
    base = Path(root) if root is not None else default_data_root()
    path = base / name
    if not path.is_dir():
        raise DataNotFoundError(
            f"{name} not found at {path}: expected {expected}. Pass the data folder that holds {name}/ "
            f"or set {ENV_VAR}."
        )
    return path


# --------------------------------------------------------------------------- nuclei (DSB 2018)


@dataclass(frozen=True)
class NucleiImage:
    """A whole microscopy image: ``image`` HxWx3 uint8 RGB, ``masks`` NxHxW bool (one per nucleus)."""

    id: str
    image: np.ndarray
    masks: np.ndarray


@dataclass(frozen=True)
class NucleiTile:
    """A tile of a nuclei image.

    image: tile x tile x 3 uint8 RGB. tags: ``("nucleus",)`` if any nucleus pixel is in the tile,
    else ``()`` (a negative). masks: Nxtile x tile bool, the nuclei clipped to the tile (empty ones
    dropped). box: (x0, y0, x1, y1) of the tile in its image, x1/y1 exclusive. split: "train" or
    "val", decided per image so tiles of one image never straddle the split.
    """

    image_id: str
    box: tuple[int, int, int, int]
    image: np.ndarray
    tags: tuple[str, ...]
    masks: np.ndarray
    split: str


def nuclei_ids(root: str | os.PathLike | None = None) -> list[str]:
    """Sorted image ids under ``nuclei-dsb2018/stage1_test/``."""
    base = _dataset_dir(root, NUCLEI_DIR, "stage1_test/<id>/images/<id>.png and stage1_test/<id>/masks/*.png")
    ids = sorted(
        p.name for p in (base / "stage1_test").glob("*") if (p / "images" / f"{p.name}.png").is_file()
    )
    if not ids:
        raise DataNotFoundError(
            f"no images found under {base / 'stage1_test'}: expected <id>/images/<id>.png"
        )
    return ids


def nuclei_split(ids: list[str], split_seed: int = 0, val_fraction: float = 0.2) -> dict[str, str]:
    """A seeded image-level split: id -> "train" or "val" (round(val_fraction * n) images in val)."""
    order = np.random.default_rng(split_seed).permutation(len(ids))
    n_val = int(round(val_fraction * len(ids)))
    val = {ids[k] for k in order[:n_val]}
    return {i: ("val" if i in val else "train") for i in ids}


def _mask_index(path: Path) -> tuple[int, str]:
    suffix = path.stem.rsplit("_", 1)[-1]
    return (int(suffix), path.name) if suffix.isdigit() else (1 << 30, path.name)


def nuclei_images(
    root: str | os.PathLike | None = None, ids: list[str] | None = None
) -> Iterator[NucleiImage]:
    """Each image (RGBA converted to RGB) with all its instance masks, read lazily, in id order."""
    base = _dataset_dir(root, NUCLEI_DIR, "stage1_test/<id>/images/<id>.png")
    for image_id in ids if ids is not None else nuclei_ids(root):
        folder = base / "stage1_test" / image_id
        image = read_image(folder / "images" / f"{image_id}.png")
        masks = []
        for path in sorted((folder / "masks").glob("*.png"), key=_mask_index):
            with Image.open(path) as img:
                mask = np.asarray(img.convert("L")) > 127
            if mask.shape != image.shape[:2]:
                raise BadInputError(str(path), f"mask is {mask.shape}, its image is {image.shape[:2]}")
            if mask.any():
                masks.append(mask)
        stack = np.stack(masks) if masks else np.zeros((0, *image.shape[:2]), bool)
        yield NucleiImage(image_id, image, stack)


def nuclei_tiles(
    root: str | os.PathLike | None = None,
    tile: int = 128,
    split_seed: int = 0,
    split: str | None = None,
    val_fraction: float = 0.2,
) -> Iterator[NucleiTile]:
    """Non-overlapping ``tile`` x ``tile`` tiles of every image (a remainder at the right/bottom is dropped).

    ``split`` ("train", "val" or None for both) keeps the tiles of the images in that part of the
    seeded split (see :func:`nuclei_split`).
    """
    if tile < 8:
        raise BadInputError("tile", f"{tile} is too small (expected at least 8 pixels)")
    if split not in (None, "train", "val"):
        raise BadInputError("split", f"{split!r} is not 'train', 'val' or None")
    ids = nuclei_ids(root)
    parts = nuclei_split(ids, split_seed, val_fraction)
    chosen = [i for i in ids if split is None or parts[i] == split]
    for item in nuclei_images(root, chosen):
        h, w = item.image.shape[:2]
        for y in range(0, h - tile + 1, tile):
            for x in range(0, w - tile + 1, tile):
                clipped = item.masks[:, y : y + tile, x : x + tile]
                clipped = clipped[clipped.any(axis=(1, 2))]
                yield NucleiTile(
                    image_id=item.id,
                    box=(x, y, x + tile, y + tile),
                    image=np.ascontiguousarray(item.image[y : y + tile, x : x + tile]),
                    tags=(NUCLEI_CLASS,) if len(clipped) else (),
                    masks=np.ascontiguousarray(clipped),
                    split=parts[item.id],
                )


# --------------------------------------------------------------------------- CamVid


@dataclass(frozen=True)
class CamvidSample:
    """A CamVid image or crop of one.

    image: HxWx3 uint8 RGB. labels: HxW uint8, 0..10 = CAMVID_CLASSES, 11 = unlabelled (ignore).
    tags: class names covering at least ``min_fraction`` of the labelled pixels, in class order.
    box: (x0, y0, x1, y1) of the crop in the full image, x1/y1 exclusive.
    """

    name: str
    image: np.ndarray
    labels: np.ndarray
    tags: tuple[str, ...]
    box: tuple[int, int, int, int]


def camvid_tags(labels: np.ndarray, min_fraction: float = 0.005) -> tuple[str, ...]:
    """Classes covering at least ``min_fraction`` of the labelled (non-ignore) pixels of a label map."""
    counts = np.bincount(labels.ravel(), minlength=CAMVID_IGNORE + 1)[:CAMVID_IGNORE]
    total = counts.sum()
    if total == 0:
        return ()
    return tuple(CAMVID_CLASSES[c] for c in range(len(CAMVID_CLASSES)) if counts[c] >= min_fraction * total)


def camvid(
    root: str | os.PathLike | None = None,
    split: str = "train",
    crop: int | None = None,
    crop_seed: int = 0,
    crops_per_image: int = 1,
    min_fraction: float = 0.005,
) -> Iterator[CamvidSample]:
    """CamVid images (``crop=None``) or ``crops_per_image`` random square crops of side ``crop`` per image.

    Crop positions depend only on (crop_seed, image number, crop number). Read lazily in name order.
    """
    if split not in ("train", "val"):
        raise BadInputError("split", f"{split!r} is not 'train' or 'val'")
    base = _dataset_dir(root, CAMVID_DIR, f"{split}/*.png (RGB images) and {split}annot/*.png (label maps)")
    names = sorted(p.name for p in (base / split).glob("*.png"))
    if not names:
        raise DataNotFoundError(f"no images found in {base / split}: expected {split}/*.png")
    for number, name in enumerate(names):
        image = read_image(base / split / name)
        label_path = base / f"{split}annot" / name
        if not label_path.is_file():
            raise DataNotFoundError(f"label map {label_path} not found for image {base / split / name}")
        with Image.open(label_path) as img:
            labels = np.array(img.convert("L") if img.mode not in ("L", "P") else img, dtype=np.uint8)
        if labels.shape != image.shape[:2]:
            raise BadInputError(
                str(label_path), f"label map is {labels.shape}, its image is {image.shape[:2]}"
            )
        if labels.max() > CAMVID_IGNORE:
            raise BadInputError(str(label_path), f"label {labels.max()} found, expected 0..{CAMVID_IGNORE}")
        h, w = labels.shape
        if crop is None:
            yield CamvidSample(name, image, labels, camvid_tags(labels, min_fraction), (0, 0, w, h))
            continue
        if not 8 <= crop <= min(h, w):
            raise BadInputError("crop", f"{crop} does not fit {name} ({w}x{h}); expected 8..{min(h, w)}")
        for k in range(crops_per_image):
            rng = np.random.default_rng([crop_seed, number, k])
            y, x = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
            part = np.ascontiguousarray(labels[y : y + crop, x : x + crop])
            yield CamvidSample(
                name,
                np.ascontiguousarray(image[y : y + crop, x : x + crop]),
                part,
                camvid_tags(part, min_fraction),
                (x, y, x + crop, y + crop),
            )


# --------------------------------------------------------------------------- COCO photos


@dataclass(frozen=True)
class CocoPhoto:
    """A COCO photo: ``image`` HxWx3 uint8 RGB, ``masks`` NxHxW bool instances of ``labels`` (N indices
    into the set's ``classes``), ``tags`` its class names (sorted), ``file_name`` and ``id`` as in COCO."""

    id: int
    file_name: str
    image: np.ndarray
    tags: tuple[str, ...]
    masks: np.ndarray
    labels: np.ndarray


def coco_classes(root: str | os.PathLike | None = None) -> tuple[str, ...]:
    """The category names of ``coco-train100/instances.json`` that have an instance, by category id."""
    return _used_classes(read_coco(_dataset_dir(root, COCO_DIR, _COCO_EXPECTED) / "instances.json"))


def _used_classes(data: CocoDataset) -> tuple[str, ...]:
    used = {inst.category_id for found in data.instances.values() for inst in found}
    return tuple(data.categories[c] for c in sorted(used))


_COCO_EXPECTED = "instances.json (COCO instances with RLE masks) and images/*.jpg"


def coco_photos(
    root: str | os.PathLike | None = None, ids: set[int] | None = None, max_side: int | None = None
) -> Iterator[CocoPhoto]:
    """The photos of ``coco-train100`` (those of ``ids`` when given) in image-id order, each downscaled
    to at most ``max_side`` pixels on its longer side when given (its masks with it, nearest)."""
    base = _dataset_dir(root, COCO_DIR, _COCO_EXPECTED)
    data = read_coco(base / "instances.json", base / "images")
    if not data.images:
        raise DataNotFoundError(f"no readable images in {base / 'images'} for {base / 'instances.json'}")
    index = {name: k for k, name in enumerate(_used_classes(data))}
    for entry in sorted(data.images, key=lambda e: e.id):
        if ids is not None and entry.id not in ids:
            continue
        image = read_image(base / "images" / entry.file_name)
        found = data.instances.get(entry.id, [])
        masks = np.stack([i.mask for i in found]) if found else np.zeros((0, *image.shape[:2]), bool)
        h, w = image.shape[:2]
        if max_side is not None and max(h, w) > max_side:
            factor = max_side / max(h, w)
            size = (max(1, round(w * factor)), max(1, round(h * factor)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            masks = (
                np.stack(
                    [cv2.resize(m.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0 for m in masks]
                )
                if len(masks)
                else np.zeros((0, size[1], size[0]), bool)
            )
        keep = masks.any(axis=(1, 2))  # a sliver may vanish at the smaller size
        yield CocoPhoto(
            entry.id,
            entry.file_name,
            image,
            data.tags(entry.id),
            masks[keep],
            np.array([index[i.category] for i in found], dtype=np.int64)[keep],
        )


def coco_photo_split(
    root: str | os.PathLike | None = None, seed: int = 0, val_fraction: float = 1 / 3
) -> dict[str, set[int]]:
    """``{"train": ids, "val": ids}``: the image ids of ``coco-train100`` split at random (``seed``),
    ``val_fraction`` of them (rounded) for validation."""
    data = read_coco(_dataset_dir(root, COCO_DIR, _COCO_EXPECTED) / "instances.json")
    ids = sorted(e.id for e in data.images)
    order = np.random.default_rng(seed).permutation(len(ids))
    n_val = round(len(ids) * val_fraction)
    return {
        "val": {ids[k] for k in order[:n_val]},
        "train": {ids[k] for k in order[n_val:]},
    }
