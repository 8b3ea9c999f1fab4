"""Where a pseudo mask came from: image and tags -> class response map -> peak -> peak response map
-> chosen mask, read back from the project store and the peaks artifacts (nothing is recomputed).

The chain follows the mask's ``peak_id`` to the stored peak and its ``prm_path`` npz (written by
``wsseg peaks``); anything the pseudo-mask stage recorded in the mask's ``lineage`` JSON is kept as
``recorded`` for the page to list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from wsseg.data.coco import decode_rle
from wsseg.data.images import read_image
from wsseg.overlay import crm_to_pixels
from wsseg.stages.make_peaks import load_result
from wsseg.store import PeakRecord, Project


@dataclass(frozen=True)
class Lineage:
    """One pseudo mask and the maps it came from (all at the mask's resolution, H x W).

    image: HxWx3 uint8; tags: the image's tags; class_name: the mask's class.
    mask: bool HxW, the chosen mask. crm: float32 HxW, the class's raw CRM mapped to pixels, or None
    when no peaks artifact is linked. peak: (y, x) pixel of the peak, or None. prm: float32 HxW
    (sums to 1) or None. info: the mask's id, status, source, strategy, score and run.
    recorded: the mask's lineage JSON as the pseudo-mask stage stored it.
    """

    image: np.ndarray
    tags: tuple[str, ...]
    class_name: str
    mask: np.ndarray
    crm: np.ndarray | None
    peak: tuple[int, int] | None
    prm: np.ndarray | None
    info: dict[str, Any] = field(default_factory=dict)
    recorded: dict[str, Any] = field(default_factory=dict)


def images_with_masks(project: Project) -> list[int]:
    """Ids of the images that have at least one pseudo mask, in import order."""
    with project.reading() as conn:
        rows = conn.execute("SELECT DISTINCT image_id FROM pseudo_masks ORDER BY image_id").fetchall()
    return [int(r[0]) for r in rows]


def _peak(project: Project, image_id: int, peak_id: int | None) -> PeakRecord | None:
    if peak_id is None:
        return None
    for run in project.runs("peaks"):
        for peak in project.peaks(image_id, run.id):
            if peak.id == peak_id:
                return peak
    return None


def mask_lineage(project: Project, mask: dict[str, Any]) -> Lineage:
    """The lineage of ``mask``, one row of ``Project.pseudo_masks``."""
    record = project.image(mask["image_id"])
    binary = decode_rle(mask["rle"]).astype(bool)
    height, width = binary.shape
    image = read_image(project.image_path(record), record.filename)
    if image.shape[:2] != (height, width):  # the classifier saw a resized image
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    crm = prm = point = None
    peak = _peak(project, record.id, mask.get("peak_id"))
    if peak is not None:
        point = (int(peak.y), int(peak.x))
        if peak.prm_path and project.path(peak.prm_path).is_file():
            data = load_result(project.path(peak.prm_path))
            class_index = project.classes().index(peak.class_name)
            stride = max(1, round(height / data["crm"].shape[1]))
            crm = crm_to_pixels(data["crm"][class_index], stride, (height, width))
            rows = data["peaks"].reshape(-1, 4)
            hit = np.flatnonzero(
                (rows[:, 0] == class_index) & (rows[:, 1] == peak.y) & (rows[:, 2] == peak.x)
            )
            if len(hit) and data["prms"].shape[1:] == (height, width):
                prm = data["prms"][hit[0]]
    info = {k: mask.get(k) for k in ("id", "status", "source", "strategy", "score", "run_id", "version")}
    return Lineage(
        image=image,
        tags=record.tags,
        class_name=mask["class_name"],
        mask=binary,
        crm=crm,
        peak=point,
        prm=prm,
        info=info,
        recorded=dict(mask.get("lineage") or {}),
    )
