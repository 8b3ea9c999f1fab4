"""The project the reliability campaign protects: tagged images with proposed pseudo masks, which a
user would not want to lose."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from wsseg.data.coco import encode_mask
from wsseg.data.images import content_hash
from wsseg.store.project import Project


def seed_project(root: Path, n_images: int = 6, masks_per_image: int = 2, run: bool = False) -> Project:
    """A project with tagged images and proposed pseudo masks (what a user would not want to lose);
    with ``run``, the masks belong to a finished pseudo-masks run (what the Curate page reviews)."""
    project = Project.create(root, name="reliability")
    run_id = project.start_run("pseudo_masks", {"retrieval": {"strategy": "prm"}}) if run else None
    rng = np.random.default_rng(0)
    for i in range(n_images):
        pixels = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
        data = png_bytes(pixels)
        image_id = project.add_image(f"kept_{i}.png", data, 32, 32, content_hash(data), ("cat", "dog")).id
        for k in range(masks_per_image):
            mask = np.zeros((32, 32), bool)
            mask[k * 8 : k * 8 + 8, 4:12] = True
            project.add_pseudo_mask(image_id, "cat", encode_mask(mask), run_id=run_id, score=0.5)
    if run_id is not None:
        project.finish_run(run_id)
    return project


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()
