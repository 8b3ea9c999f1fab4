"""Stage: class-agnostic mask proposals of every image of a project (selective search, step 4).

For each image, writes ``artifacts/proposals/run-<id>/<image id>.json``: ``size`` [H, W] (the stored
image's), ``rles`` (K compressed COCO RLE dicts at that size, best objectness first), ``objectness``,
``source``, ``level``, ``sources`` (see ``wsseg.methods.proposals.Proposals``), ``working_size`` [h, w]
(where selective search ran: the image downscaled to at most ``wsseg.stages.recipes.WORKING_SIDE``
pixels on its longer side; its masks are upscaled back before they are written, and kept as computed
in ``working_rles`` when that size differs) and ``seconds`` (time to compute them). An image whose work fails is skipped and named in the run's metrics. The run's
config is in the database and in ``config.json`` beside the files. Images are processed by a pool of
worker processes; ``--shard i/n`` takes every n-th image starting at the i-th, and ``--run`` joins the
shards of several calls (or machines with a copy of the project) into one run.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from wsseg.data.coco import decode_masks, decode_rle, encode_mask, encode_masks
from wsseg.data.images import read_image
from wsseg.errors import BadInputError
from wsseg.fileio import write_json
from wsseg.methods.proposals import ProposalConfig, Proposals, selective_search
from wsseg.stages.common import image_progress
from wsseg.stages.make_peaks import parse_shard, working_shape
from wsseg.stages.per_image import ImageProgress, open_run, print_skipped, resumed_config, run_per_image
from wsseg.stages.recipes import WORKING_SIDE
from wsseg.store.project import Project

STAGE = "proposals"


def resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """HxW bool -> bool at ``shape`` (H', W'): enlarged bilinearly (a pixel is in when at least half of
    what covers it was), shrunk by the nearest pixel centre (area averaging costs 0.4 s a mask from
    6000x6000; nearest samples give a mask that was enlarged from that size back exactly)."""
    if mask.shape == tuple(shape):
        return mask.astype(bool)
    size = (int(shape[1]), int(shape[0]))
    if shape[0] * shape[1] < mask.size:
        return cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST_EXACT).astype(bool)
    return cv2.resize(mask.astype(np.uint8) * 255, size, interpolation=cv2.INTER_LINEAR) >= 128


def save_proposals(path: Path, proposals: Proposals, shape: tuple[int, int], seconds: float = 0.0) -> None:
    """Write ``proposals`` as the stage's JSON with their masks at the stored image's ``shape`` (H, W);
    masks computed at a smaller working size are upscaled one at a time, and kept as computed too
    (``working_rles``: what the pseudo-mask stage reads, without decoding the large ones)."""
    working = proposals.masks.shape[1:]
    same = tuple(working) == tuple(shape)
    rles = (
        encode_masks(proposals.masks)
        if same
        else [encode_mask(resize_mask(m, shape)) for m in proposals.masks]
    )
    write_json(
        path,
        {
            "size": [int(shape[0]), int(shape[1])],
            "working_size": [int(working[0]), int(working[1])],
            "rles": rles,
            **({} if same else {"working_rles": encode_masks(proposals.masks)}),
            "objectness": [float(v) for v in proposals.objectness],
            "source": [int(v) for v in proposals.source],
            "level": [int(v) for v in proposals.level],
            "sources": list(proposals.sources),
            "seconds": seconds,
        },
    )


def load_proposals(path: Path, max_side: int | None = None) -> Proposals:
    """The proposals written by ``save_proposals``: masks decoded to KxHxW bool at the stored image's
    size, or, with ``max_side``, at most ``max_side`` pixels on the longer side (``WORKING_SIDE``: the
    masks as the stage computed them, when it did at that size; else downscaled one at a time), so a
    large image's proposals fit in memory."""
    try:
        data = json.loads(Path(path).read_text())
        shape = tuple(data["size"])
        small = working_shape(*shape, max_side) if max_side is not None else shape
        if small == shape:
            masks = decode_masks(data["rles"], shape)
        elif "working_rles" in data and tuple(data["working_size"]) == small:
            masks = decode_masks(data["working_rles"], small)
        elif data["rles"]:
            masks = np.stack([resize_mask(decode_rle(r), small) for r in data["rles"]])
        else:
            masks = np.zeros((0, *small), bool)
        return Proposals(
            masks=masks,
            objectness=np.asarray(data["objectness"], np.float32),
            source=np.asarray(data["source"], np.int16),
            level=np.asarray(data["level"], np.int32),
            sources=tuple(data["sources"]),
        )
    except FileNotFoundError:
        raise BadInputError(str(path), "no proposals for this image: run `wsseg proposals` first") from None
    except (ValueError, KeyError, TypeError) as error:
        raise BadInputError(str(path), f"is not a proposals file ({error})") from None


def proposal_masks(path: Path, indices: Sequence[int]) -> np.ndarray | None:
    """The proposals ``indices`` of a proposals file, decoded alone at the stored image's size (bool
    KxHxW, in that order); None when an index is not in the file. A few masks of a large image, where
    ``load_proposals`` without ``max_side`` would decode them all."""
    try:
        data = json.loads(Path(path).read_text())
        rles = data["rles"]
        if any(not 0 <= int(k) < len(rles) for k in indices):
            return None
        return decode_masks([rles[int(k)] for k in indices], tuple(data["size"]))
    except FileNotFoundError:
        raise BadInputError(str(path), "no proposals for this image: run `wsseg proposals` first") from None
    except (ValueError, KeyError, TypeError) as error:
        raise BadInputError(str(path), f"is not a proposals file ({error})") from None


def _one_image(task: tuple[str, str, str, dict[str, Any]]) -> dict[str, float]:
    """Worker: (image path, image name, output path, config) -> {"proposals": count, "seconds": time}.

    Selective search runs on the image downscaled to at most ``WORKING_SIDE`` pixels on its longer side
    (its memory and time grow faster than the pixel count: 12 GB at 6000x6000)."""
    image_path, name, out_path, config = task
    image = read_image(image_path, name)
    shape = image.shape[:2]
    height, width = working_shape(*shape, WORKING_SIDE)
    if (height, width) != shape:
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    start = time.perf_counter()
    try:
        proposals = selective_search(image, ProposalConfig.from_dict(config))
    except BadInputError as error:  # about the array: name the image instead
        raise BadInputError(name, error.problem) from None
    seconds = time.perf_counter() - start
    save_proposals(Path(out_path), proposals, shape, seconds)
    return {"proposals": len(proposals), "seconds": seconds, "processed": 1}


def make_proposals(
    project: Project,
    config: ProposalConfig | None = None,
    split: str | None = None,
    shard: tuple[int, int] = (0, 1),
    run_id: int | None = None,
    workers: int = 1,
    progress: ImageProgress | None = None,
    cluster: str | None = None,
) -> int:
    """Compute and store the proposals of the project's images (of ``split``, one shard); return the run id.

    The images run in ``workers`` local processes, or on the Ray cluster at ``cluster``; each is
    committed to ``run_id`` (given: a run joined or resumed) as its file is written, and an image the
    run committed already is not worked on again. The run's metrics: images, proposals (total) and seconds_per_image (mean compute time per image in
    one worker, reading and writing excluded)."""
    config = config or ProposalConfig()
    settings = {"proposals": config.to_dict(), "split": split, "shard": list(shard), "max_side": WORKING_SIDE}
    run_id = open_run(project, STAGE, settings, run_id, cluster)
    records = project.images(split=split)[shard[0] :: shard[1]]
    tasks = [
        (
            str(project.image_path(r)),
            r.filename,
            str(project.artifact(STAGE, run_id, r.id, ".json")),
            config.to_dict(),
        )
        for r in records
    ]

    def summary(totals: dict[str, float]) -> dict[str, Any]:
        per_image = totals["seconds"] / max(1, totals["processed"])  # skipped images took no time
        return {"images": len(tasks), "proposals": totals["proposals"], "seconds_per_image": per_image}

    counts = ("proposals", "seconds", "processed")
    ids = {task[2]: r.id for task, r in zip(tasks, records, strict=True)}
    run_per_image(
        project,
        run_id,
        tasks,
        _one_image,
        None,
        counts,
        workers,
        progress,
        summary,
        _filename,
        image_id=lambda task: ids[task[2]],
        cluster=cluster,
    )
    return run_id


def _filename(task: tuple[str, str, str, dict[str, Any]]) -> str:
    return task[1]


def run_from_args(args: argparse.Namespace) -> None:
    try:
        scales = tuple(float(s) for s in args.scales.split(",")) if args.scales else ()
    except ValueError:
        raise BadInputError(
            "--scales", f"expected numbers separated by commas, got {args.scales!r}"
        ) from None
    overrides: dict[str, Any] = {"scales": scales} if args.scales else {}
    if args.colour_spaces:
        overrides["colour_spaces"] = tuple(s.strip() for s in args.colour_spaces.split(","))
    if args.max_proposals is not None:
        overrides["max_proposals"] = args.max_proposals
    config = ProposalConfig(**overrides)
    project = Project(args.project)
    shard, split, run = parse_shard(args.shard), args.split, args.run
    if args.resume is not None:
        settings = resumed_config(project, STAGE, args.resume)
        config = ProposalConfig.from_dict(settings["proposals"])
        shard, split, run = tuple(settings["shard"]), settings["split"], args.resume
    with image_progress(args, "proposals") as progress:
        run_id = make_proposals(project, config, split, shard, run, args.workers, progress, args.cluster)
    print(f"proposals written: run {run_id}, {project.artifacts(STAGE, run_id)}")
    print_skipped(project, run_id)
