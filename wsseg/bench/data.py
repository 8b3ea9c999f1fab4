"""The benchmark's datasets as train/validation splits of samples with tags and instance masks."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wsseg.data.real import (
    CAMVID_CLASSES,
    NUCLEI_CLASS,
    camvid,
    coco_classes,
    coco_photo_split,
    coco_photos,
    nuclei_tiles,
)
from wsseg.data.shapes import ShapesConfig, iter_samples
from wsseg.errors import BadInputError
from wsseg.stages.recipes import COCO_SIDE


@dataclass(frozen=True)
class BenchSample:
    """image: HxWx3 uint8; tags: class names; masks: NxHxW bool instances; labels: N class indices."""

    image: np.ndarray
    tags: tuple[str, ...]
    masks: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class BenchSplit:
    name: str
    classes: tuple[str, ...]
    samples: Iterable[BenchSample]


def _shapes(config: ShapesConfig, n: int = 1_000_000) -> Iterator[BenchSample]:
    for s in iter_samples(config, n):
        yield BenchSample(s.image, s.tags, s.masks, s.labels)


def _nuclei(root: Path | None, split: str) -> Iterator[BenchSample]:
    for tile in nuclei_tiles(root, tile=128, split=split):
        yield BenchSample(tile.image, tile.tags, tile.masks, np.zeros(len(tile.masks), dtype=np.int64))


def _camvid(root: Path | None, split: str, seed: int) -> Iterator[BenchSample]:
    # Semantic labels only: no instances to evaluate peaks against.
    for sample in camvid(root, split=split, crop=160, crop_seed=seed, crops_per_image=2):
        yield BenchSample(
            sample.image, sample.tags, np.zeros((0, *sample.image.shape[:2]), bool), np.zeros(0, int)
        )


def _coco(root: Path | None, ids: set[int]) -> Iterator[BenchSample]:
    for photo in coco_photos(root, ids, max_side=COCO_SIDE):
        yield BenchSample(photo.image, photo.tags, photo.masks, photo.labels)


DATASETS = ("shapes", "nuclei", "camvid", "coco")


def dataset_splits(dataset: str, seed: int, data_root: Path | None) -> tuple[BenchSplit, BenchSplit]:
    """(train, val) splits of ``dataset``: 'shapes' (generated; validation from another seed),
    'nuclei' (128 px tiles, split by image), 'camvid' (160 px crops of its train and val sets) or 'coco'
    (the 98 photos of coco-train100 at ``COCO_SIDE`` px, a third of them for validation, drawn with
    ``seed``)."""
    if dataset == "shapes":
        return (
            BenchSplit("train", ShapesConfig().classes, _shapes(ShapesConfig(seed=seed))),
            BenchSplit("val", ShapesConfig().classes, _shapes(ShapesConfig(seed=seed + 10_000))),
        )
    if dataset == "nuclei":
        return BenchSplit("train", (NUCLEI_CLASS,), _nuclei(data_root, "train")), BenchSplit(
            "val", (NUCLEI_CLASS,), _nuclei(data_root, "val")
        )
    if dataset == "camvid":
        return BenchSplit("train", CAMVID_CLASSES, _camvid(data_root, "train", seed)), BenchSplit(
            "val", CAMVID_CLASSES, _camvid(data_root, "val", seed)
        )
    if dataset == "coco":
        classes, ids = coco_classes(data_root), coco_photo_split(data_root, seed)
        return BenchSplit("train", classes, _coco(data_root, ids["train"])), BenchSplit(
            "val", classes, _coco(data_root, ids["val"])
        )
    raise BadInputError("--dataset", f"expected one of {', '.join(DATASETS)}, got {dataset!r}")
