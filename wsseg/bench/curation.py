"""Does curating in queue order pay off? A simulated annotator on a project with ground truth.

``bench_curation`` copies a project twice (the database is copied, images and artifacts are linked, so
the original is never written) and, in each copy, lets a simulated annotator review N automatic pseudo
masks of a run: the first N of the review queue (``wsseg.curation.queue.review_queue``) in one copy, N random
ones in the other. For each mask the annotator

- accepts it when its IoU with a true instance of its class is >= ``iou`` (0.5);
- else swaps it to the best-ranked proposal of its lineage with such an IoU, if any;
- else rejects it.

Every decision goes through the same actions as the Curate page. Reported: the counts, and the mask
mAP of the run's pseudo masks against the truth before and after (rejected masks dropped), once with
the stored scores and once with accepted and edited masks ranked above the unreviewed ones (a reviewed
mask is as sure as a label; this rewards confirming good masks, which the queue does not aim at), with the
curated COCO JSON of each copy (accepted + edited + still proposed: the training set a retrained Mask
R-CNN would see).
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Collection, Mapping
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np

from wsseg.curation import queue as curation
from wsseg.curation.export import is_curated
from wsseg.data.coco import decode_rle
from wsseg.errors import BadInputError
from wsseg.methods.mask_map import mask_map
from wsseg.stages.make_pseudo_masks import export_coco
from wsseg.store.importer import GROUND_TRUTH
from wsseg.store.instances import curated_instances, true_instances
from wsseg.store.project import DB_NAME, Project
from wsseg.structures import Instances

AUTHOR = "simulated annotator"


def scratch_copy(
    project: Project, folder: str | Path, share: tuple[str, ...] = ("images", "artifacts", "checkpoints")
) -> Project:
    """A copy of ``project`` in ``folder`` that shares its files: the database is copied (SQLite's backup
    API, consistent under WAL); the folders of ``share`` and the ground truth file are symbolic links.
    Write nothing under the links (a folder not shared starts empty and is the copy's own)."""
    folder = Path(folder)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    with (
        closing(sqlite3.connect(project.db_path)) as source,
        closing(sqlite3.connect(folder / DB_NAME)) as target,
    ):
        source.backup(target)
    for sub in share:
        if (project.root / sub).exists():
            (folder / sub).symlink_to((project.root / sub).resolve(), target_is_directory=True)
    if (project.root / GROUND_TRUTH).is_file():
        (folder / GROUND_TRUTH).symlink_to((project.root / GROUND_TRUTH).resolve())
    return Project(folder)


def _best_iou(mask: np.ndarray, truth: np.ndarray) -> float:
    """Best IoU of an HxW bool mask with any of NxHxW bool masks (0 when N = 0)."""
    if not len(truth):
        return 0.0
    inter = (truth & mask).reshape(len(truth), -1).sum(axis=1)
    union = (truth | mask).reshape(len(truth), -1).sum(axis=1)
    return float((inter / np.maximum(union, 1)).max())


def review(
    project: Project, mask_ids: list[int], truth: Mapping[int, Instances], iou: float = 0.5
) -> dict[str, int]:
    """Let the simulated annotator decide ``mask_ids`` (see the module docstring); returns the counts
    ``accepted``, ``swapped``, ``rejected`` and ``wrong`` (masks below ``iou`` before review)."""
    classes = project.classes()
    counts = {"accepted": 0, "swapped": 0, "rejected": 0, "wrong": 0}
    for mask_id in mask_ids:
        row = curation.mask_row(project, mask_id)
        inst = truth.get(row["image_id"])
        same = inst.masks[inst.labels == classes.index(row["class_name"])] if inst is not None else None
        same = same if same is not None else np.zeros((0, *decode_rle(row["rle"]).shape), bool)
        if _best_iou(decode_rle(row["rle"]), same) >= iou:
            curation.accept(project, mask_id, row["version"], author=AUTHOR)
            counts["accepted"] += 1
            continue
        counts["wrong"] += 1
        ranks = range(len(row["lineage"].get("ranked", [])))
        rank = next(
            (k for k in ranks if _best_iou(decode_rle(curation.proposal_rle(project, row, k)), same) >= iou),
            None,
        )
        if rank is not None:
            curation.swap(project, mask_id, row["version"], rank, author=AUTHOR)
            counts["swapped"] += 1
        else:
            curation.reject(project, mask_id, row["version"], author=AUTHOR)
            counts["rejected"] += 1
    return counts


def bench_curation(
    project: Project,
    out_dir: str | Path,
    n: int,
    run_id: int | None = None,
    truth: Mapping[int, Instances] | None = None,
    seed: int = 0,
    iou: float = 0.5,
    images: Collection[int] | None = None,
) -> dict[str, Any]:
    """Simulated curation of ``n`` masks of a pseudo-masks run in queue order and in random order.

    ``images``: the ids of the images whose masks may be reviewed and are exported (default: all).
    ``truth``: image id -> true Instances (default: the project's ground truth over the images the run
    processed, its split and shard, or over ``images``).
    Returns ``map50_before``, ``coco_before`` (the path of the COCO JSON of the run's masks as they
    are), and for ``queue`` and ``random``: the counts of ``review``, ``map50_after`` (stored scores),
    ``map50_after_lifted`` (reviewed masks ranked first) and ``coco`` (the path of the curated COCO
    JSON: accepted, edited and unreviewed masks, for retraining). The project itself is not changed.
    """
    run = curation.pseudo_run(project, run_id)
    if truth is None:
        if images is None:
            start, step = run.config.get("shard", [0, 1])
            records = project.images(split=run.config.get("split"))[start::step]
        else:
            records = [project.image(i) for i in sorted(images)]
        truth = true_instances(project, records)
        if not any(len(inst) for inst in truth.values()):
            raise BadInputError(str(project.root), "has no ground truth to simulate an annotator with")
    chosen_images = set(images) if images is not None else None
    num_classes = len(project.classes())
    key = f"map{round(iou * 100):d}"

    def score(p: Project, lift: bool) -> float:
        return mask_map(truth, curated_instances(p, run.id, truth, lift), num_classes, (iou,)).maps[key]

    def export(p: Project, path: Path) -> str:
        export_coco(
            p,
            run.id,
            path,
            keep=lambda m: is_curated(m, True) and (chosen_images is None or m["image_id"] in chosen_images),
        )
        return str(path)

    before = score(project, False)
    queue = [
        item.mask_id
        for item in curation.review_queue(project, run.id)
        if item.status == "proposed" and (chosen_images is None or item.image_id in chosen_images)
    ]
    rng = np.random.default_rng(seed)
    orders = {"queue": queue[:n], "random": [int(v) for v in rng.permutation(queue)[:n]]}
    result: dict[str, Any] = {
        "n": min(n, len(queue)),
        "masks": len(queue),
        f"{key}_before": before,
        "coco_before": export(project, Path(out_dir) / "pseudo_before.json"),
    }
    for name, chosen in orders.items():
        copy = scratch_copy(project, Path(out_dir) / name)
        counts = review(copy, chosen, truth, iou)
        result[name] = {
            **counts,
            f"{key}_after": score(copy, False),
            f"{key}_after_lifted": score(copy, True),
            "coco": export(copy, Path(out_dir) / f"curated_{name}.json"),
        }
    return result
