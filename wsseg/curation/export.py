"""Export of a curated pseudo-masks run: COCO instance JSON and VOC-style PNGs.

The curated set of a run is its masks (automatic and user-added) whose status is accepted or edited,
optionally also those still proposed; rejected masks and empty masks are never written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from wsseg.data.coco import decode_rle
from wsseg.data.voc import masks_to_maps, write_voc
from wsseg.stages.make_pseudo_masks import export_coco
from wsseg.store.project import Project
from wsseg.store.results import CURATED


def is_curated(mask: dict[str, Any], include_proposed: bool = False) -> bool:
    """Whether a mask row belongs to the curated set."""
    return mask["status"] in CURATED or (include_proposed and mask["status"] == "proposed")


def export_curated_coco(
    project: Project, run_id: int, path: str | Path, include_proposed: bool = False
) -> dict:
    """Write the curated masks of a pseudo-masks run as a COCO instance JSON (category ids 1..K in the
    project's class order); return the document."""
    return export_coco(project, run_id, Path(path), keep=lambda m: is_curated(m, include_proposed))


def export_curated_voc(
    project: Project, run_id: int, folder: str | Path, include_proposed: bool = False
) -> list[Path]:
    """Write ``SegmentationClass/<stem>.png`` (0 background, class index + 1) and
    ``SegmentationObject/<stem>.png`` (0 background, instance 1..N) for every image with a curated
    mask of the run; where masks overlap the later one wins. Returns the semantic PNG paths."""
    classes = project.classes()
    by_image: dict[int, list[dict[str, Any]]] = {}
    for m in project.pseudo_masks(run_id=run_id):
        if is_curated(m, include_proposed):
            by_image.setdefault(m["image_id"], []).append(m)
    written = []
    for image_id in sorted(by_image):
        record = project.image(image_id)
        masks = [decode_rle(m["rle"]) for m in by_image[image_id]]
        keep = [k for k, mask in enumerate(masks) if mask.any()]
        if not keep:
            continue
        stack = np.stack([masks[k] for k in keep])
        labels = [classes.index(by_image[image_id][k]["class_name"]) for k in keep]
        semantic, instance = masks_to_maps(stack, labels, (record.height, record.width))
        written.append(write_voc(folder, Path(record.filename).stem, semantic, instance)[0])
    return written
