"""Curation of pseudo masks: a review queue ordered by estimated error, and the annotator's actions.

The queue needs no ground truth. Each automatic pseudo mask of a run gets three uncertainty terms,
each in [0, 1] (1 = most likely wrong):

- ``margin``: 1 - (s1 - s2) / |s1|, clipped to [0, 1], where s1 >= s2 are the scores of the best and
  second-best ranked proposals in its lineage. A pick that barely beat the runner-up is fragile; a mask
  with a single candidate gets 0.
- ``disagreement``: 1 - IoU between this mask and the mask the other strategy (PRM retrieval against
  WISE) chose for the same peak, in the newest finished run of the other strategy (the mask that
  absorbed the peak in its NMS counts as its choice). IoU 0 when that run has masks in the image but
  none for the peak; absent (None) when no such run covers the image.
- ``confidence``: 1 - the rank of the mask's peak value (the classifier's class response at the peak)
  among the run's masks of the same class, as a fraction in [0, 1] (ties share their mean rank; a
  class with one mask gets 0.5). A rank, not the raw value, because response scales differ by class.

``error`` is the weighted mean of the terms present (``DEFAULT_WEIGHTS``); the queue is sorted by it,
highest first. The default leaves the margin out (weight 0, still shown): on 150 shapes training images
(a well-trained small classifier; truth used only to measure), the AUC of each term at telling a wrong
mask (IoU < 0.5 with every true instance of its class) from a right one was, for the PRM run (30% wrong)
margin 0.35, disagreement 0.71, confidence 0.78, and for the WISE run (49% wrong) 0.60, 0.90, 0.65;
equal weights gave 0.77 / 0.87, disagreement + confidence 0.81 / 0.89. Every action (accept, reject, swap to a ranked proposal, paint/erase, add a missed
instance, flag) goes through ``Project.edit_mask``, so it is in the database the moment it is made,
with its before and after; ``undo`` and ``redo`` write the reverse or the re-application as a new edit
naming the one it reverts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from wsseg.data.coco import decode_rle, encode_mask
from wsseg.errors import BadInputError
from wsseg.stages.make_proposals import STAGE as PROPOSALS_STAGE
from wsseg.stages.make_proposals import load_proposals
from wsseg.stages.recipes import WORKING_SIDE
from wsseg.store.project import Project, RunRecord

STAGE = "pseudo_masks"
TERMS: tuple[str, ...] = ("margin", "disagreement", "confidence")
DEFAULT_WEIGHTS: dict[str, float] = {"margin": 0.0, "disagreement": 1.0, "confidence": 1.0}
EQUAL_WEIGHTS: dict[str, float] = {"margin": 1.0, "disagreement": 1.0, "confidence": 1.0}
FRESH = "fresh"  # an edit that is neither an undo nor a redo


@dataclass(frozen=True)
class QueueItem:
    """One pseudo mask in the review queue.

    terms: name -> uncertainty in [0, 1] (``TERMS``; ``disagreement`` missing when unavailable).
    error: weighted mean of ``terms`` in [0, 1]. relative_margin: (s1 - s2) / |s1| clipped to [0, 1].
    strategy_iou: IoU with the other strategy's mask, or None. peak_value: the raw class response.
    """

    mask_id: int
    image_id: int
    class_name: str
    status: str
    flagged: bool
    version: int
    error: float
    terms: dict[str, float] = field(default_factory=dict)
    relative_margin: float = 0.0
    strategy_iou: float | None = None
    peak_value: float = 0.0


# ----------------------------------------------------------------------------------------- the queue


def relative_margin(ranked: list[Mapping[str, Any]]) -> float:
    """(s1 - s2) / |s1| of the two best ranked scores, clipped to [0, 1]; 1 with fewer than two."""
    if len(ranked) < 2:
        return 1.0
    s1, s2 = float(ranked[0]["score"]), float(ranked[1]["score"])
    if not np.isfinite(s2):
        return 1.0
    return float(np.clip((s1 - s2) / max(abs(s1), 1e-12), 0.0, 1.0))


def value_ranks(values: list[float]) -> list[float]:
    """Each value's rank among ``values`` as a fraction in [0, 1] (0 lowest, ties share the mean; 0.5
    for a single value)."""
    if len(values) == 1:
        return [0.5]
    array = np.asarray(values, np.float64)
    below = (array[None, :] < array[:, None]).sum(axis=1)
    equal = (array[None, :] == array[:, None]).sum(axis=1) - 1
    return [float(v) for v in (below + 0.5 * equal) / (len(values) - 1)]


def combine(terms: Mapping[str, float | None], weights: Mapping[str, float] = DEFAULT_WEIGHTS) -> float:
    """The weighted mean of the terms that are present (not None) and weighted; 0 when none is."""
    present = [(weights.get(name, 0.0), value) for name, value in terms.items() if value is not None]
    total = sum(w for w, _ in present)
    return float(sum(w * v for w, v in present) / total) if total > 0 else 0.0


def pseudo_run(project: Project, run_id: int | None = None) -> RunRecord:
    """A pseudo-masks run of the project (default: the newest finished one)."""
    runs = project.runs(STAGE)
    if run_id is None:
        run = next((r for r in runs if r.status == "done"), None)
    else:
        run = next((r for r in runs if r.id == run_id), None)
    if run is None:
        what = "has no finished pseudo-masks run" if run_id is None else f"has no pseudo-masks run {run_id}"
        raise BadInputError(str(project.root), f"{what}: run `wsseg pseudo-masks` first")
    return run


def run_strategy(run: RunRecord) -> str | None:
    return run.config.get("retrieval", {}).get("strategy")


def other_strategy_run(project: Project, run: RunRecord) -> RunRecord | None:
    """The newest finished pseudo-masks run whose strategy differs from ``run``'s, if any."""
    mine = run_strategy(run)
    return next(
        (r for r in project.runs(STAGE) if r.status == "done" and r.id != run.id and run_strategy(r) != mine),
        None,
    )


def _rle_iou(a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
    def compressed(rle: Mapping[str, Any]) -> dict:
        counts = rle["counts"]
        return {"size": list(rle["size"]), "counts": counts.encode() if isinstance(counts, str) else counts}

    return float(mask_utils.iou([compressed(a)], [compressed(b)], [0])[0, 0])


def review_queue(
    project: Project,
    run_id: int | None = None,
    against_run: int | None = None,
    weights: Mapping[str, float] = DEFAULT_WEIGHTS,
) -> list[QueueItem]:
    """The automatic pseudo masks of a run, most likely wrong first (see the module docstring).

    ``against_run``: the pseudo-masks run whose masks the disagreement term compares with (default:
    the newest finished run of the other strategy; -1: none).
    """
    run = pseudo_run(project, run_id)
    masks = [m for m in project.pseudo_masks(run_id=run.id) if m["source"] == "auto"]
    if against_run is None:
        other = other_strategy_run(project, run)
    else:
        other = None if against_run == -1 else pseudo_run(project, against_run)
    by_peak: dict[tuple[int, int], dict[str, Any]] = {}
    covered: set[int] = set()
    for m in project.pseudo_masks(run_id=other.id) if other is not None else []:
        covered.add(m["image_id"])
        for peak in [m["lineage"].get("peak", {}).get("id"), *m["lineage"].get("merged_peaks", [])]:
            if peak is not None:
                by_peak.setdefault((m["image_id"], int(peak)), m)
    ranks: dict[int, float] = {}
    for name in {m["class_name"] for m in masks}:
        mine = [m for m in masks if m["class_name"] == name]
        values = [float(m["lineage"].get("peak", {}).get("value", 0.0)) for m in mine]
        ranks.update(zip((m["id"] for m in mine), value_ranks(values), strict=True))
    items = []
    for m in masks:
        margin = relative_margin(m["lineage"].get("ranked", []))
        peak = m["lineage"].get("peak", {}).get("id", m["peak_id"])
        iou = None
        if m["image_id"] in covered:
            twin = by_peak.get((m["image_id"], int(peak))) if peak is not None else None
            iou = _rle_iou(m["rle"], twin["rle"]) if twin is not None else 0.0
        terms = {"margin": 1.0 - margin, "confidence": 1.0 - ranks[m["id"]]}
        if iou is not None:
            terms["disagreement"] = 1.0 - iou
        items.append(
            QueueItem(
                mask_id=m["id"],
                image_id=m["image_id"],
                class_name=m["class_name"],
                status=m["status"],
                flagged=bool(m["flagged"]),
                version=m["version"],
                error=combine(terms, weights),
                terms=terms,
                relative_margin=margin,
                strategy_iou=iou,
                peak_value=float(m["lineage"].get("peak", {}).get("value", 0.0)),
            )
        )
    return sorted(items, key=lambda item: (-item.error, item.mask_id))


# ----------------------------------------------------------------------------------------- actions


def mask_row(project: Project, mask_id: int) -> dict[str, Any]:
    """One pseudo mask as ``Project.pseudo_masks`` returns it."""
    with project.reading() as conn:
        row = conn.execute(
            "SELECT m.*, c.name AS class_name FROM pseudo_masks m JOIN classes c ON c.id = m.class_id "
            "WHERE m.id = ?",
            (mask_id,),
        ).fetchone()
    if row is None:
        raise BadInputError(f"mask {mask_id}", "no such pseudo mask")
    return {**dict(row), "rle": json.loads(row["rle"]), "lineage": json.loads(row["lineage"])}


def accept(project: Project, mask_id: int, version: int, author: str = "") -> int:
    """Mark a mask accepted; returns its new version (as every action)."""
    return project.edit_mask(mask_id, version, "accept", status="accepted", author=author)


def reject(project: Project, mask_id: int, version: int, author: str = "") -> int:
    return project.edit_mask(mask_id, version, "reject", status="rejected", author=author)


def flag(project: Project, mask_id: int, version: int, flagged: bool = True, author: str = "") -> int:
    """Flag a mask as uncertain (or clear the flag); its status is unchanged."""
    return project.edit_mask(
        mask_id, version, "flag" if flagged else "unflag", flagged=flagged, author=author
    )


def proposal_rle(project: Project, mask: Mapping[str, Any], rank: int) -> dict[str, Any]:
    """The RLE of the ``rank``-th (0 = the chosen one) ranked proposal in a mask's lineage."""
    ranked = mask["lineage"].get("ranked", [])
    if not 0 <= rank < len(ranked):
        raise BadInputError(f"rank {rank}", f"mask {mask['id']} keeps {len(ranked)} ranked proposal(s)")
    source = mask["lineage"].get("proposal", {}).get("run")
    if source is None:
        raise BadInputError(f"mask {mask['id']}", "has no proposals run in its lineage")
    path = project.artifact(PROPOSALS_STAGE, int(source), mask["image_id"], ".json")
    try:
        rles = json.loads(path.read_text())["rles"]
    except (FileNotFoundError, ValueError, KeyError) as error:
        raise BadInputError(str(path), f"cannot read the proposals of this image ({error})") from None
    return rles[int(ranked[rank]["proposal"])]


def swap(project: Project, mask_id: int, version: int, rank: int, author: str = "") -> int:
    """Replace a mask by its ``rank``-th ranked proposal (status 'edited')."""
    rle = proposal_rle(project, mask_row(project, mask_id), rank)
    return project.edit_mask(mask_id, version, "swap", status="edited", rle=rle, author=author)


def paint(project: Project, mask_id: int, version: int, mask: np.ndarray, author: str = "") -> int:
    """Replace a mask by a painted/erased one (HxW bool of the mask's size; status 'edited')."""
    size = tuple(mask_row(project, mask_id)["rle"]["size"])
    if mask.shape != size or mask.dtype != bool:
        raise BadInputError(
            "painted mask", f"expected an {size[0]}x{size[1]} bool mask, got {mask.dtype} {mask.shape}"
        )
    return project.edit_mask(mask_id, version, "paint", status="edited", rle=encode_mask(mask), author=author)


def apply_stroke(mask: np.ndarray, drawn: np.ndarray, mode: str) -> np.ndarray:
    """HxW bool mask with an HxW bool stroke painted in (``mode`` 'paint') or erased ('erase')."""
    if mask.shape != drawn.shape:
        raise BadInputError("stroke", f"expected {mask.shape}, got {drawn.shape}")
    if mode == "paint":
        return mask | drawn
    if mode == "erase":
        return mask & ~drawn
    raise BadInputError(f"mode {mode!r}", "expected 'paint' or 'erase'")


@dataclass(frozen=True)
class Candidate:
    """A stored proposal holding a clicked point: index in its run, objectness, area (pixels), RLE."""

    proposal: int
    objectness: float
    area: int
    rle: dict[str, Any]


def candidates_at(project: Project, run_id: int, image_id: int, point: tuple[int, int]) -> list[Candidate]:
    """The proposals of an image (from the pseudo-masks run's proposals run) that contain ``point``
    (y, x pixels), best objectness first."""
    run = pseudo_run(project, run_id)
    source = run.config.get("proposals_run")
    if source is None:
        raise BadInputError(f"run {run.id}", "names no proposals run")
    path = project.artifact(PROPOSALS_STAGE, int(source), image_id, ".json")
    proposals = load_proposals(path, WORKING_SIDE)  # a large image's at its working size (memory)
    h, w = proposals.masks.shape[1:]
    record = project.image(image_id)
    height, width = record.height, record.width  # the stored RLEs' size
    y, x = int(point[0]), int(point[1])
    if not (0 <= y < height and 0 <= x < width):
        raise BadInputError(f"point {point}", f"lies outside the {width}x{height} image")
    rles = json.loads(path.read_text())["rles"]
    hits = [k for k in np.flatnonzero(proposals.masks[:, y * h // height, x * w // width])]
    hits.sort(key=lambda k: -float(proposals.objectness[k]))
    per_pixel = height * width / (h * w)
    return [
        Candidate(
            int(k), float(proposals.objectness[k]), round(int(proposals.masks[k].sum()) * per_pixel), rles[k]
        )
        for k in hits
    ]


def add_instance(
    project: Project, run_id: int, image_id: int, class_name: str, rle: dict[str, Any], author: str = ""
) -> int:
    """Add a missed instance to a run (source 'user', accepted); returns its mask id.

    It is stored empty first and then filled by an 'add' edit, so undoing the addition leaves an empty
    mask that no export writes."""
    if class_name not in project.classes():
        raise BadInputError(f"class {class_name!r}", f"expected one of {project.classes()}")
    empty = encode_mask(np.zeros(tuple(int(v) for v in rle["size"]), bool))
    mask_id = project.add_pseudo_mask(image_id, class_name, empty, source="user", run_id=run_id)
    project.edit_mask(mask_id, 1, "add", status="accepted", rle=rle, author=author)
    return mask_id


# ----------------------------------------------------------------------------------------- undo, redo


def _edits(project: Project, author: str | None, mask_id: int | None) -> list[dict[str, Any]]:
    """Edits in scope (one author's, one mask's, or all), newest first."""
    return [e for e in reversed(project.edit_history(mask_id)) if author is None or e["author"] == author]


def _kind(edit: Mapping[str, Any]) -> str:
    return edit["action"] if edit["action"] in ("undo", "redo") else FRESH


def undo_target(project: Project, author: str | None = None, mask_id: int | None = None) -> dict | None:
    """The edit ``undo`` would revert: the newest in scope that is not an undo and not undone."""
    return next((e for e in _edits(project, author, mask_id) if _kind(e) != "undo" and not e["undone"]), None)


def redo_target(project: Project, author: str | None = None, mask_id: int | None = None) -> dict | None:
    """The undo ``redo`` would revert: the newest undo in scope not yet redone, with no fresh edit after it."""
    for edit in _edits(project, author, mask_id):
        if _kind(edit) == FRESH:
            return None
        if _kind(edit) == "undo" and not edit["undone"]:
            return edit
    return None


def _revert(project: Project, target: dict[str, Any], action: str, author: str) -> int:
    row = mask_row(project, target["mask_id"])
    now = {"status": row["status"], "rle": row["rle"], "flagged": bool(row["flagged"])}
    expected = {"flagged": False, **target["after"]}
    if now != expected:
        raise BadInputError(
            f"mask {target['mask_id']}",
            f"changed since edit {target['id']}; {action} would overwrite that change",
        )
    back = {"flagged": False, **target["before"]}
    return project.edit_mask(
        target["mask_id"],
        row["version"],
        action,
        status=back["status"],
        rle=back["rle"],
        flagged=back["flagged"],
        author=author,
        reverts=target["id"],
    )


def undo(
    project: Project, author: str = "", mask_id: int | None = None, scope_author: bool = True
) -> int | None:
    """Revert the newest edit in scope (this author's, or everyone's with ``scope_author`` False; of one
    mask or all): its ``before`` is written back as an 'undo' edit. Returns the reverted mask's id, or
    None when there is nothing to undo."""
    target = undo_target(project, author if scope_author else None, mask_id)
    if target is None:
        return None
    _revert(project, target, "undo", author)
    return int(target["mask_id"])


def redo(
    project: Project, author: str = "", mask_id: int | None = None, scope_author: bool = True
) -> int | None:
    """Re-apply the newest undone edit in scope (as a 'redo' edit reverting its undo). Returns the mask
    id, or None when there is nothing to redo."""
    target = redo_target(project, author if scope_author else None, mask_id)
    if target is None:
        return None
    _revert(project, target, "redo", author)
    return int(target["mask_id"])


# ----------------------------------------------------------------------------------------- audit log


@dataclass(frozen=True)
class AuditRow:
    """One edit for the audit log: ``at`` UNIX seconds; ``summary`` what changed, in words."""

    edit_id: int
    mask_id: int
    action: str
    author: str
    at: float
    summary: str
    undone: bool
    reverts: int | None


def summarize(before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    """'status proposed → accepted; area 120 → 340 px (IoU 0.35); flagged' (only what changed)."""
    parts = []
    if before.get("status") != after.get("status"):
        parts.append(f"status {before.get('status')} → {after.get('status')}")
    if before.get("rle") != after.get("rle"):
        a, b = decode_rle(before["rle"]), decode_rle(after["rle"])
        union = int((a | b).sum())
        iou = (a & b).sum() / union if union else 1.0
        parts.append(f"area {int(a.sum())} → {int(b.sum())} px (IoU {iou:.2f})")
    if bool(before.get("flagged", False)) != bool(after.get("flagged", False)):
        parts.append("flagged" if after.get("flagged") else "flag cleared")
    return "; ".join(parts) or "no change"


def audit_log(project: Project, mask_id: int | None = None, limit: int | None = None) -> list[AuditRow]:
    """The edit history, newest first (all masks or one), each with a before/after summary."""
    edits = _edits(project, None, mask_id)[:limit]
    return [
        AuditRow(
            e["id"],
            e["mask_id"],
            e["action"],
            e["author"],
            e["at"],
            summarize(e["before"], e["after"]),
            bool(e["undone"]),
            e.get("reverts"),
        )
        for e in edits
    ]


def when(at: float) -> str:
    """UNIX seconds -> 'YYYY-MM-DD HH:MM:SS' local time."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))
