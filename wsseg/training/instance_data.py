"""Instance targets for Mask R-CNN: a project's images with the masks of a COCO instance JSON.

The COCO file may hold pseudo masks (the weak pipeline's, or an export of curated ones) or the
project's ground truth (``ground_truth.json``: the fully-supervised upper bound); either way the same
dataset feeds the same training. Its images are matched to the project's by file name and only those
of the requested split are used; its categories are matched to the project's classes by name.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from wsseg.data.coco import decode_rle, read_coco
from wsseg.data.images import read_image
from wsseg.errors import BadInputError
from wsseg.models.maskrcnn import to_model_input
from wsseg.store.project import Project
from wsseg.training.datasets import Augment, augment_image


@dataclass(frozen=True)
class InstanceItem:
    """One training image: its file, and its instances as (COCO RLE dict, 0-based class index)."""

    path: Path
    name: str
    instances: tuple[tuple[dict, int], ...]


class InstanceImages(Dataset):
    """Item: ``(3xHxW float32 in [0, 1], target)`` with target ``boxes`` (float32 Nx4, xyxy pixels, the
    mask's extent: x2 = last column + 1), ``labels`` (int64 N in 1..K; 0 is background) and ``masks``
    (uint8 NxHxW in {0, 1}). ``augment`` applies the same flips/turns to image and masks; colour
    changes touch the image only."""

    def __init__(self, items: list[InstanceItem], classes: list[str], augment: Augment | None = None) -> None:
        self.items = items
        self.classes = list(classes)
        self.augment = augment

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        item = self.items[index]
        image = read_image(item.path, item.name)
        h, w = image.shape[:2]
        masks = (
            np.stack([decode_rle(rle) for rle, _ in item.instances])
            if item.instances
            else np.zeros((0, h, w), bool)
        )
        if self.augment is not None:
            # Drawn from torch's generator, which the engine reseeds each epoch: reproducible on resume.
            seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
            image, masks = augment_pair(image, masks, self.augment, seed)
        labels = torch.tensor([label + 1 for _, label in item.instances], dtype=torch.int64)
        return to_model_input(image), {
            "boxes": mask_boxes(masks),
            "labels": labels,
            "masks": torch.from_numpy(masks.astype(np.uint8)),
        }

    @classmethod
    def from_coco(
        cls,
        project: Project,
        coco_path: str | Path,
        split: str | None = "train",
        augment: Augment | None = None,
        max_images: int | None = None,
    ) -> InstanceImages:
        """The project's ``split`` images that ``coco_path`` lists (the first ``max_images`` of them when
        given), with its instances as targets."""
        coco = read_coco(coco_path)
        classes = project.classes()
        unknown = sorted(set(coco.categories.values()) - set(classes))
        if unknown:
            raise BadInputError(
                str(coco_path), f"categories {unknown[:5]} are not classes of the project ({classes})"
            )
        index = {name: k for k, name in enumerate(classes)}
        records = {r.filename: r for r in project.images(split=split)}
        items = []
        for image in coco.images:
            record = records.get(image.file_name)
            if record is None:
                continue  # another split's image, or one the project does not hold
            if (record.height, record.width) != (image.height, image.width):
                raise BadInputError(
                    str(coco_path),
                    f"image {image.file_name} is {image.width}x{image.height} there but "
                    f"{record.width}x{record.height} in the project",
                )
            instances = tuple(
                (inst.rle, index[inst.category])
                for inst in coco.instances.get(image.id, [])
                if not inst.iscrowd
            )
            items.append(InstanceItem(project.image_path(record), record.filename, instances))
        if not items:
            raise BadInputError(
                str(coco_path), f"lists none of the project's {split!r} images (matched by file name)"
            )
        return cls(items[:max_images], classes, augment)


def mask_boxes(masks: np.ndarray) -> torch.Tensor:
    """NxHxW bool -> float32 Nx4 xyxy boxes enclosing each mask (x2, y2 one past the last pixel)."""
    boxes = np.zeros((len(masks), 4), np.float32)
    for k, mask in enumerate(masks):
        ys = np.flatnonzero(mask.any(axis=1))
        xs = np.flatnonzero(mask.any(axis=0))
        boxes[k] = (xs[0], ys[0], xs[-1] + 1, ys[-1] + 1)
    return torch.from_numpy(boxes)


def augment_pair(
    image: np.ndarray, masks: np.ndarray, aug: Augment, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``wsseg.training.datasets.augment_image`` on an HxWx3 image and its NxHxW masks together: the masks get the
    same flips and turns (the same draws of a generator seeded alike), never the colour changes."""
    image = augment_image(image, aug, np.random.default_rng(seed))
    geometry = dataclasses.replace(aug, colour=False)
    stacked = augment_image(masks.transpose(1, 2, 0), geometry, np.random.default_rng(seed))
    return image, np.ascontiguousarray(stacked.transpose(2, 0, 1))


def collate(batch: list[tuple[torch.Tensor, dict[str, torch.Tensor]]]) -> tuple[list, list]:
    """Mask R-CNN takes lists (images may differ in size): ([images], [targets])."""
    return [image for image, _ in batch], [target for _, target in batch]
