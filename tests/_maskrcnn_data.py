"""A tiny shapes project for the Mask R-CNN tests: 64x64 images, train and val splits, ground truth."""

from dataclasses import replace
from pathlib import Path

from wsseg.data.shapes import ShapesConfig, write_shapes_dataset
from wsseg.models.maskrcnn import MaskRCNNConfig
from wsseg.store.importer import import_source
from wsseg.store.project import Project

SHAPES = ShapesConfig(height=64, width=64, min_size=14, max_size=28, min_instances=1, max_instances=3)
TINY = MaskRCNNConfig(
    num_classes=4,
    fpn_channels=32,
    image_size=64,
    box_head_size=64,
    mask_head_convs=1,
    mask_head_channels=32,
    rpn_batch_per_image=32,
    roi_batch_per_image=16,
)


def tiny_project(root: Path, n_train: int = 8, n_val: int = 4) -> Project:
    project = Project.create(root / "project")
    for split, n, seed in (("train", n_train, 1), ("val", n_val, 2)):
        folder = write_shapes_dataset(root / split, n, replace(SHAPES, seed=seed))
        import_source(project, folder, split=split)
    return project
