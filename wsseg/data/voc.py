"""Pascal VOC-style segmentation PNGs, written and read as palette ("P" mode) images.

Two maps per image, both HxW uint8:
- semantic (``SegmentationClass/<stem>.png``): 0 = background, c = class c, 255 = ignore/boundary;
- instance (``SegmentationObject/<stem>.png``): 0 = background, k = instance k (1-based), 255 = ignore.
Class c here is the label index + 1 (label 0 of a dataset's class list is written as 1).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from wsseg.errors import BadInputError
from wsseg.fileio import atomic_open

IGNORE = 255
SEMANTIC_DIR = "SegmentationClass"
INSTANCE_DIR = "SegmentationObject"
IMAGE_DIR = "JPEGImages"
VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
    "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
"""The 20 Pascal VOC classes; in VOC PNGs class c (1..20) is VOC_CLASSES[c - 1]."""


def voc_palette() -> np.ndarray:
    """256x3 uint8 colours: index i gets the bits of i spread over R, G, B from the high bit down."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    for index in range(256):
        value, rgb = index, [0, 0, 0]
        for shift in range(7, -1, -1):
            for channel in range(3):
                rgb[channel] |= ((value >> channel) & 1) << shift
            value >>= 3
        palette[index] = rgb
    return palette


@dataclass(frozen=True)
class VocMasks:
    """Instances read back from a VOC pair.

    masks: NxHxW bool, one per instance id 1..N present (in id order); class_ids: N int64 class
    values of the semantic map (1-based; label index = class id - 1); instance_ids: N int64.
    semantic, instance: the HxW uint8 maps as read.
    """

    masks: np.ndarray
    class_ids: np.ndarray
    instance_ids: np.ndarray
    semantic: np.ndarray
    instance: np.ndarray


def masks_to_maps(
    masks: np.ndarray, labels: Sequence[int], shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """NxHxW bool masks and N label indices -> (semantic, instance) HxW uint8 maps.

    Instance k (0-based) becomes id k+1 and class label+1; where masks overlap, the later one wins.
    """
    if len(masks) > 254:
        raise BadInputError("instances", f"{len(masks)} instances do not fit a VOC map (at most 254)")
    semantic = np.zeros(shape, np.uint8)
    instance = np.zeros(shape, np.uint8)
    for k, (mask, label) in enumerate(zip(masks, labels, strict=True)):
        if not 0 <= int(label) < 254:
            raise BadInputError("labels", f"label {label} does not fit a VOC map (expected 0..253)")
        semantic[mask] = int(label) + 1
        instance[mask] = k + 1
    return semantic, instance


def write_voc(
    out_dir: str | os.PathLike, stem: str, semantic: np.ndarray, instance: np.ndarray | None = None
) -> tuple[Path, Path | None]:
    """Write ``SegmentationClass/<stem>.png`` (and ``SegmentationObject/<stem>.png``) as palette PNGs.

    ``semantic`` and ``instance`` are HxW uint8 (see the module docstring). Returns the two paths.
    """
    out_dir = Path(out_dir)
    semantic_path = out_dir / SEMANTIC_DIR / f"{stem}.png"
    _write_palette_png(semantic_path, semantic)
    instance_path = None
    if instance is not None:
        if instance.shape != semantic.shape:
            raise BadInputError(
                stem, f"instance map {instance.shape} and semantic map {semantic.shape} differ"
            )
        instance_path = out_dir / INSTANCE_DIR / f"{stem}.png"
        _write_palette_png(instance_path, instance)
    return semantic_path, instance_path


def _write_palette_png(path: Path, values: np.ndarray) -> None:
    if values.ndim != 2 or values.dtype != np.uint8:
        raise BadInputError(str(path), f"expected an HxW uint8 map, got {values.dtype} {values.shape}")
    img = Image.fromarray(values)
    img.putpalette(voc_palette().tobytes())  # turns the L image into P with the same indices
    with atomic_open(path, "wb") as handle:
        img.save(handle, format="PNG")


def read_voc_map(path: str | os.PathLike) -> np.ndarray:
    """A palette or grayscale PNG -> HxW uint8 of its indices (not its colours)."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            if img.mode not in ("P", "L"):
                raise BadInputError(
                    str(path), f"expected a palette (P) or grayscale (L) PNG, got mode {img.mode}"
                )
            return np.array(img, dtype=np.uint8)
    except FileNotFoundError:
        raise BadInputError(str(path), "file not found") from None
    except OSError as exc:
        raise BadInputError(str(path), f"not a readable PNG ({exc})") from None


def read_voc_masks(semantic_path: str | os.PathLike, instance_path: str | os.PathLike) -> VocMasks:
    """Read a SegmentationClass / SegmentationObject pair into per-instance masks and class ids.

    Each instance's class is the most common non-ignore semantic value under it; instances whose
    pixels are all ignore/background in the semantic map are dropped.
    """
    semantic = read_voc_map(semantic_path)
    instance = read_voc_map(instance_path)
    if semantic.shape != instance.shape:
        raise BadInputError(
            str(instance_path), f"size {instance.shape} differs from {semantic_path} {semantic.shape}"
        )
    masks, class_ids, ids = [], [], []
    for inst_id in np.unique(instance):
        if inst_id in (0, IGNORE):
            continue
        mask = instance == inst_id
        values = semantic[mask]
        values = values[(values != 0) & (values != IGNORE)]
        if values.size == 0:
            continue
        masks.append(mask)
        class_ids.append(int(np.bincount(values).argmax()))
        ids.append(int(inst_id))
    stack = np.stack(masks) if masks else np.zeros((0, *semantic.shape), bool)
    return VocMasks(stack, np.asarray(class_ids, np.int64), np.asarray(ids, np.int64), semantic, instance)


def iter_voc(
    root: str | os.PathLike, split: str | None = None
) -> Iterator[tuple[str, Path, Path, Path | None]]:
    """(stem, image path, semantic path, instance path or None) for each annotated image of a VOC folder.

    ``root`` holds JPEGImages/ and SegmentationClass/ (and optionally SegmentationObject/);
    ``split`` names ``ImageSets/Segmentation/<split>.txt`` to restrict the stems.
    """
    root = Path(root)
    semantic_dir = root / SEMANTIC_DIR
    if not semantic_dir.is_dir():
        raise BadInputError(str(root), f"expected a VOC folder with {SEMANTIC_DIR}/ and {IMAGE_DIR}/")
    if split is None:
        stems = sorted(p.stem for p in semantic_dir.glob("*.png"))
    else:
        listing = root / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not listing.is_file():
            raise BadInputError(str(listing), f"split file for '{split}' not found")
        stems = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
    for stem in stems:
        images = [
            p for p in (root / IMAGE_DIR).glob(f"{stem}.*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")
        ]
        instance = root / INSTANCE_DIR / f"{stem}.png"
        if not images:
            raise BadInputError(str(root / IMAGE_DIR), f"no image for {stem}")
        yield stem, images[0], semantic_dir / f"{stem}.png", instance if instance.is_file() else None
