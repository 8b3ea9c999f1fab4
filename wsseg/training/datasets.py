"""Torch datasets over tagged images: what the trainable stages consume.

A ``TaggedImages`` holds images (HxWx3 uint8, all one size) and their multi-hot tag vectors in memory;
it is built from a project (``from_project``) or from arrays (the benchmark's generated data). An image
of the project that cannot be read is left out of training with a warning naming it.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from wsseg.data.images import read_image
from wsseg.errors import BadInputError
from wsseg.models.normalise import to_tensor
from wsseg.store.project import ImageRecord, Project


@dataclass(frozen=True)
class Augment:
    """Training augmentation. ``flips``: horizontal/vertical flips and 90-degree turns (for data whose
    classes do not depend on orientation); ``hflip``: horizontal flip only; ``colour``: random channel
    permutation and inversion (for data whose class is not its colour)."""

    flips: bool = True
    hflip: bool = True
    colour: bool = True


def augment_image(image: np.ndarray, aug: Augment, rng: np.random.Generator) -> np.ndarray:
    """Apply ``aug`` to one HxWx3 uint8 image (square when ``flips`` turns it)."""
    if aug.flips:
        image = np.rot90(image, k=int(rng.integers(4)))
        if rng.random() < 0.5:
            image = image[::-1]
    if aug.hflip and rng.random() < 0.5:
        image = image[:, ::-1]
    if aug.colour:
        image = image[..., rng.permutation(3)]
        if rng.random() < 0.25:
            image = 255 - image
    return np.ascontiguousarray(image)


def check_tagged_arrays(images: np.ndarray, targets: np.ndarray, classes: Sequence[str]) -> None:
    """Raise BadInputError unless ``images`` is NxHxWx3 uint8 and ``targets`` is N x len(classes)."""
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise BadInputError("images", f"expected an NxHxWx3 uint8 array, got {images.shape} {images.dtype}")
    if targets.shape != (len(images), len(classes)):
        raise BadInputError("targets", f"expected shape {(len(images), len(classes))}, got {targets.shape}")


class TaggedImages(Dataset):
    """Images and multi-hot targets. Item: ``(3xHxW float32 normalised, C float32 in {0, 1})``."""

    def __init__(
        self, images: np.ndarray, targets: np.ndarray, classes: Sequence[str], augment: Augment | None = None
    ) -> None:
        check_tagged_arrays(images, targets, classes)
        self.images = images
        self.targets = targets.astype(np.float32)
        self.classes = tuple(classes)
        self.augment = augment

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[index]
        if self.augment is not None:
            # Drawn from torch's generator, which the engine reseeds each epoch: reproducible on resume.
            seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
            image = augment_image(image, self.augment, np.random.default_rng(seed))
        return to_tensor(image), torch.from_numpy(self.targets[index])

    @classmethod
    def from_project(
        cls,
        project: Project,
        size: int | None = None,
        split: str | None = "train",
        augment: Augment | None = None,
    ) -> TaggedImages:
        """All images of a project split with their tags, resized to ``size`` x ``size`` when given
        (required when the images differ in size)."""
        records = project.images(split=split)
        if not records:
            raise BadInputError(str(project.root), f"has no images in split {split!r}; import some first")
        classes = project.classes()
        images, records = load_readable_images(project, records, size)
        return cls(images, multi_hot([r.tags for r in records], classes), classes, augment)


def multi_hot(tags: Sequence[Sequence[str]], classes: Sequence[str]) -> np.ndarray:
    """NxC float32 {0, 1}: 1 where image n carries class c."""
    index = {name: i for i, name in enumerate(classes)}
    out = np.zeros((len(tags), len(classes)), dtype=np.float32)
    for n, names in enumerate(tags):
        for name in names:
            out[n, index[name]] = 1.0
    return out


def load_readable_images(
    project: Project, records: Sequence[ImageRecord], size: int | None
) -> tuple[np.ndarray, list[ImageRecord]]:
    """Read the records' images into one NxHxWx3 uint8 array (resized to ``size`` if given); return it
    with the records read, in order. An image that cannot be read (missing, corrupt, out of memory) is
    left out with a warning naming it; BadInputError when none can be."""
    sizes = {(r.height, r.width) for r in records}
    if size is None and len(sizes) > 1:
        raise BadInputError("size", f"the images have {len(sizes)} different sizes; give a training size")
    out, kept = [], []
    for record in records:
        try:
            image = read_image(project.image_path(record), record.filename)
        except (BadInputError, MemoryError) as error:
            warnings.warn(f"{record.filename} left out of training: {error}", stacklevel=2)
            continue
        if size is not None and image.shape[:2] != (size, size):
            image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
        out.append(image)
        kept.append(record)
    if not out:
        raise BadInputError(str(project.root), f"none of its {len(records)} training images can be read")
    return np.stack(out), kept
