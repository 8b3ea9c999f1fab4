"""Where a pseudo mask came from: image and tags -> class response map -> peak -> peak response map
-> ranked proposals -> chosen mask -> a trained model's prediction, read back from the project store
and the stages' artifacts (nothing is recomputed).

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
from wsseg.methods.overlap import mask_iou
from wsseg.stages.make_peaks import load_result
from wsseg.stages.make_proposals import STAGE as PROPOSALS_STAGE
from wsseg.stages.make_proposals import proposal_masks
from wsseg.stages.make_pseudo_masks import image_peaks
from wsseg.store.project import Project
from wsseg.store.results import PeakRecord
from wsseg.views.overlay import crm_to_pixels


@dataclass(frozen=True)
class Lineage:
    """One pseudo mask and the maps it came from (all at the mask's resolution, H x W).

    image: HxWx3 uint8; tags: the image's tags; class_name: the mask's class.
    mask: bool HxW, the chosen mask. crm: float32 HxW, the class's raw CRM mapped to pixels, or None
    when no peaks artifact is linked. peak: (y, x) pixel of the peak, or None. prm: float32 HxW
    (sums to 1) or None. info: the mask's id, status, source, strategy, score and run.
    recorded: the mask's lineage JSON as the pseudo-mask stage stored it.
    ranked: bool KxHxW, the best-ranked proposals of the mask's peak, best first (the recorded ranking),
        or None when the proposals run's file is gone. prediction: (bool HxW mask, score) of the newest
        model evaluation's predicted instance of the class overlapping the mask most, or None.
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
    ranked: np.ndarray | None = None
    prediction: tuple[np.ndarray, float] | None = None


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
            if len(hit):
                # the file's pixels are the classifier's input (resized or enlarged): the peak and its
                # PRM mapped to the mask's, as the pseudo-mask stage maps them
                found = image_peaks(data, (height, width), [int(hit[0])])[0]
                point, prm = (found.y, found.x), found.prm
    info = {k: mask.get(k) for k in ("id", "status", "source", "strategy", "score", "run_id", "version")}
    recorded = dict(mask.get("lineage") or {})
    return Lineage(
        image=image,
        tags=record.tags,
        class_name=mask["class_name"],
        mask=binary,
        crm=crm,
        peak=point,
        prm=prm,
        info=info,
        recorded=recorded,
        ranked=_ranked(project, record.id, recorded, (height, width)),
        prediction=_prediction(project, record.id, mask["class_name"], binary),
    )


def _ranked(
    project: Project, image_id: int, recorded: dict[str, Any], shape: tuple[int, int]
) -> np.ndarray | None:
    """The recorded best-ranked proposals (bool KxHxW, best first), or None."""
    run = (recorded.get("proposal") or {}).get("run")
    order = [int(r["proposal"]) for r in recorded.get("ranked") or [] if "proposal" in r]
    path = project.artifact(PROPOSALS_STAGE, int(run), image_id, ".json") if run is not None else None
    if not order or path is None or not path.is_file():
        return None
    masks = proposal_masks(path, order)  # only those: all of a large image's would not fit in memory
    return masks if masks is not None and masks.shape[1:] == shape else None


def _prediction(
    project: Project, image_id: int, class_name: str, mask: np.ndarray
) -> tuple[np.ndarray, float] | None:
    """The newest evaluation run's predicted instance of ``class_name`` on the image that overlaps
    ``mask`` most (by IoU), with its score; None when no run predicted one."""
    for run in project.runs("evaluate"):
        found = [p for p in project.predictions(run.id, image_id) if p["class_name"] == class_name]
        if not found:
            continue
        masks = [decode_rle(p["rle"]).astype(bool) for p in found]
        kept = [k for k, m in enumerate(masks) if m.shape == mask.shape]
        if kept:
            overlap = mask_iou(np.stack([masks[k] for k in kept]), mask[None])[:, 0]
            best = kept[int(np.argmax(overlap))]
            return masks[best], float(found[best]["score"])
    return None
