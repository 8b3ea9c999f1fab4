"""Stage: pseudo masks of every image of a project, one proposal per peak (step 5).

Reads a peaks run (``wsseg peaks``: PRMs and CRMs per image) and a proposals run (``wsseg
proposals``), chooses a proposal per peak with ``wsseg.methods.pseudo_masks.retrieve`` and stores the
pseudo masks in the project database (table ``pseudo_masks``: RLE, class, score, peak, strategy and a
lineage: the peak, where its PRM is, the WISE point, the peaks merged into it by the NMS, the top
ranked proposals with every term of their score, the config and the runs it came from). By default
only peaks of the classes an image is tagged with are used: on tagged images the tags are known.

Retrieval runs at the proposals' working size (``load_proposals(..., WORKING_SIDE)``: a large image's
proposals downscaled as the proposals stage computed them); each chosen mask, and the points of its
lineage, are then mapped back to the stored image's size, which every stored pseudo mask has. An image
without a result in the peaks or proposals run (skipped there, or not run on it) is skipped and named
in the run's metrics, as is one whose work fails.

Images are processed by a pool of worker processes; ``--shard i/n`` takes every n-th image starting
at the i-th and ``--run`` joins the shards of several calls into one run, so sharded runs store
exactly what one run stores. ``--export`` writes the run's pseudo masks (all shards so far, rejected
ones left out) as a COCO instance JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from wsseg.data.coco import decode_rle, encode_mask, write_coco
from wsseg.errors import BadInputError
from wsseg.methods.pseudo_masks import PeakInput, RetrievalConfig, retrieve
from wsseg.stages.common import image_progress
from wsseg.stages.make_peaks import STAGE as PEAKS_STAGE
from wsseg.stages.make_peaks import load_result, parse_shard
from wsseg.stages.make_proposals import STAGE as PROPOSALS_STAGE
from wsseg.stages.make_proposals import load_proposals, resize_mask
from wsseg.stages.per_image import (
    ImageProgress,
    open_run,
    print_skipped,
    resumed_config,
    run_per_image,
    task_filename,
    task_image_id,
)
from wsseg.stages.recipes import WORKING_SIDE
from wsseg.store.project import Project, RunRecord

STAGE = "pseudo_masks"


def _run(project: Project, stage: str, run_id: int | None, command: str) -> RunRecord:
    """The given run of ``stage``, or its newest finished one."""
    if run_id is None:
        run = project.latest_run(stage)
        if run is None:
            raise BadInputError(
                str(project.root), f"has no finished {stage} run: run `wsseg {command}` first"
            )
        return run
    run = next((r for r in project.runs(stage) if r.id == run_id), None)
    if run is None:
        raise BadInputError(f"run {run_id}", f"is not a {stage} run of this project")
    return run


def resize_prms(prms: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """KxH'xW' maps summing to 1 -> KxHxW (bilinear), renormalised to sum 1."""
    if prms.shape[1:] == shape:
        return prms
    if not len(prms):
        return np.zeros((0, *shape), np.float32)
    out = np.stack([cv2.resize(m, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR) for m in prms])
    out = np.clip(out, 0, None)
    return out / np.maximum(out.sum(axis=(1, 2), keepdims=True), 1e-30)


def image_peaks(data: dict[str, np.ndarray], shape: tuple[int, int], keep: list[int]) -> list[PeakInput]:
    """The rows ``keep`` of a peaks file's arrays (``load_result``) as PeakInputs at image size ``shape``."""
    peaks, prms = data["peaks"], data["prms"]
    scale_y, scale_x = shape[0] / prms.shape[1], shape[1] / prms.shape[2]
    maps = resize_prms(prms[keep], shape)
    return [
        PeakInput(
            class_index=int(peaks[k, 0]),
            y=min(int(peaks[k, 1] * scale_y), shape[0] - 1),
            x=min(int(peaks[k, 2] * scale_x), shape[1] - 1),
            value=float(peaks[k, 3]),
            prm=m,
        )
        for k, m in zip(keep, maps, strict=True)
    ]


def _one_image(task: dict[str, Any]) -> list[dict[str, Any]]:
    """Worker: the pseudo masks of one image as store rows (see ``make_pseudo_masks``)."""
    root = Path(task["root"])
    config = RetrievalConfig.from_dict(task["config"])
    for key, stage, run in (
        ("peaks_file", PEAKS_STAGE, "peaks_run"),
        ("proposals_file", PROPOSALS_STAGE, "proposals_run"),
    ):
        if not (root / task[key]).is_file():
            raise BadInputError(
                task["filename"],
                f"has no result in {stage} run {task[run]}: that run skipped it or did not cover it",
            )
    data = load_result(root / task["peaks_file"])
    if len(data["peaks"]) != len(task["peak_ids"]):
        raise BadInputError(
            task["peaks_file"], f"holds {len(data['peaks'])} peaks, the database {len(task['peak_ids'])}"
        )
    proposals = load_proposals(root / task["proposals_file"], WORKING_SIDE)
    shape = proposals.masks.shape[1:]
    stored = (int(task["size"][0]), int(task["size"][1]))  # the image's; ``shape`` may be smaller

    def to_stored(y: int, x: int) -> tuple[int, int]:
        return min(y * stored[0] // shape[0], stored[0] - 1), min(x * stored[1] // shape[1], stored[1] - 1)

    per_pixel = stored[0] * stored[1] / (shape[0] * shape[1])
    keep = [
        k
        for k in range(len(data["peaks"]))
        if task["classes"] is None or int(data["peaks"][k, 0]) in task["classes"]
    ]
    peaks = image_peaks(data, shape, keep)
    del data["prms"]  # the kept maps live on in ``peaks``; all of them would double the memory
    rows = []
    for found in retrieve(proposals, peaks, data["crm"], config):
        peak = peaks[found.peak]
        index = keep[found.peak]
        peak_y, peak_x = to_stored(peak.y, peak.x)
        ranked = [{**r, "area": round(r["area"] * per_pixel)} if "area" in r else r for r in found.ranked]
        lineage = {
            "strategy": config.strategy,
            "peak": {
                "id": task["peak_ids"][index],
                "class_index": peak.class_index,
                "y": peak_y,
                "x": peak_x,
                "value": peak.value,
            },
            "prm": {"path": task["peaks_file"], "index": index},
            "point": list(to_stored(*found.point)),
            "merged_peaks": [task["peak_ids"][keep[m]] for m in found.merged],
            "proposal": {"run": task["proposals_run"], "index": found.proposal},
            "ranked": ranked,
            "runs": {"peaks": task["peaks_run"], "proposals": task["proposals_run"]},
            "config": task["config"],
        }
        rows.append(
            {
                "class_index": peak.class_index,
                "rle": encode_mask(resize_mask(found.mask, stored)),
                "peak_id": task["peak_ids"][index],
                "strategy": config.strategy,
                "score": found.score,
                "lineage": lineage,
            }
        )
    return rows


def make_pseudo_masks(
    project: Project,
    config: RetrievalConfig | None = None,
    peaks_run: int | None = None,
    proposals_run: int | None = None,
    split: str | None = None,
    shard: tuple[int, int] = (0, 1),
    run_id: int | None = None,
    workers: int = 1,
    tagged_only: bool = True,
    progress: ImageProgress | None = None,
    cluster: str | None = None,
) -> int:
    """Choose and store the pseudo masks of the project's images (of ``split``, one shard); return the run id.

    ``peaks_run`` / ``proposals_run``: the runs to read (default: the newest finished of each).
    ``tagged_only``: use only the peaks of the classes each image is tagged with. The images run in
    ``workers`` local processes, or on the Ray cluster at ``cluster``; each image's masks are stored
    and the image committed to the run in one transaction, so a resumed run stores none twice.
    """
    config = config or RetrievalConfig()
    peaks = _run(project, PEAKS_STAGE, peaks_run, "peaks")
    props = _run(project, PROPOSALS_STAGE, proposals_run, "proposals")
    classes = project.classes()
    settings = {
        "retrieval": config.to_dict(),
        "peaks_run": peaks.id,
        "proposals_run": props.id,
        "split": split,
        "tagged_only": tagged_only,
        "shard": list(shard),
    }
    records = project.images(split=split)[shard[0] :: shard[1]]
    tasks = []
    for record in records:
        stored = project.peaks(record.id, peaks.id)
        peaks_file = project.artifact(PEAKS_STAGE, peaks.id, record.id, ".npz")
        proposals_file = project.artifact(PROPOSALS_STAGE, props.id, record.id, ".json")
        tasks.append(
            {
                "root": str(project.root),
                "image_id": record.id,
                "filename": record.filename,
                "size": [record.height, record.width],
                "peaks_file": peaks_file.relative_to(project.root).as_posix(),
                "proposals_file": proposals_file.relative_to(project.root).as_posix(),
                "peak_ids": [p.id for p in stored],
                "classes": [classes.index(t) for t in record.tags] if tagged_only else None,
                "config": config.to_dict(),
                "peaks_run": peaks.id,
                "proposals_run": props.id,
            }
        )
    run_id = open_run(project, STAGE, settings, run_id, cluster)

    def store(task: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, int]:
        for row in rows:
            row["class_name"] = classes[row.pop("class_index")]
        project.add_pseudo_masks(run_id, task["image_id"], rows)
        return {"masks": len(rows)}

    run_per_image(
        project,
        run_id,
        tasks,
        _one_image,
        store,
        ("masks",),
        workers,
        progress,
        name=task_filename,
        image_id=task_image_id,
        cluster=cluster,
    )
    return run_id


def export_coco(
    project: Project, run_id: int, path: Path, keep: Callable[[dict[str, Any]], bool] | None = None
) -> dict:
    """Write the pseudo masks of a run (all its shards; those ``keep`` accepts, by default all but the
    rejected ones) as a COCO instance JSON over the images that have any (an image without a pseudo
    mask teaches nothing; empty masks are skipped); return the document."""
    run = _run(project, STAGE, run_id, "pseudo-masks")
    classes = project.classes()
    by_image: dict[int, list[dict[str, Any]]] = {}
    for m in project.pseudo_masks(run_id=run.id):
        if (m["status"] != "rejected") if keep is None else keep(m):
            by_image.setdefault(m["image_id"], []).append(m)
    records = [project.image(image_id) for image_id in sorted(by_image)]
    images = [{"id": r.id, "file_name": r.filename, "width": r.width, "height": r.height} for r in records]

    def instances():
        for r in records:
            masks = by_image.get(r.id, [])
            stack = (
                np.stack([decode_rle(m["rle"]) for m in masks])
                if masks
                else np.zeros((0, r.height, r.width), bool)
            )
            yield stack, [classes.index(m["class_name"]) for m in masks]

    return write_coco(path, images, classes, instances())


def run_from_args(args: argparse.Namespace) -> None:
    project = Project(args.project)
    shard = parse_shard(args.shard)
    given = {k: getattr(args, k) for k in ("strategy", "alpha", "beta", "bg", "nms_iou", "confidence")}
    config = RetrievalConfig(**{k: v for k, v in given.items() if v is not None})
    if config.nms_iou == 0:
        config = dataclasses.replace(config, nms_iou=None)
    runs = (args.peaks_run, args.proposals_run)
    split, run, tagged_only = args.split, args.run, not args.all_classes
    if args.resume is not None:
        settings = resumed_config(project, STAGE, args.resume)
        config = RetrievalConfig.from_dict(settings["retrieval"])
        runs, split, run = (settings["peaks_run"], settings["proposals_run"]), settings["split"], args.resume
        shard, tagged_only = tuple(settings["shard"]), settings["tagged_only"]
    with image_progress(args, "pseudo masks") as progress:
        run_id = make_pseudo_masks(
            project, config, *runs, split, shard, run, args.workers, tagged_only, progress, args.cluster
        )
    count = len(project.pseudo_masks(run_id=run_id))
    print(f"pseudo masks written: run {run_id}, {count} mask(s) in {project.db_path}")
    print_skipped(project, run_id)
    if args.export is not None:
        doc = export_coco(project, run_id, args.export)
        print(f"exported {len(doc['annotations'])} mask(s) of run {run_id} to {args.export}")
