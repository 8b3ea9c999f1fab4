"""Stage: class-agnostic mask proposals of every image of a project (selective search, step 4).

For each image, writes ``artifacts/proposals/run-<id>/<image id>.json``: ``size`` [H, W], ``rles``
(K compressed COCO RLE dicts, best objectness first), ``objectness``, ``source``, ``level``,
``sources`` (see ``wsseg.methods.proposals.Proposals``) and ``seconds`` (time to compute them). The run's
config is in the database and in ``config.json`` beside the files. Images are processed by a pool of
worker processes; ``--shard i/n`` takes every n-th image starting at the i-th, and ``--run`` joins the
shards of several calls (or machines with a copy of the project) into one run.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from wsseg.data.coco import decode_masks, encode_masks
from wsseg.data.images import read_image
from wsseg.errors import BadInputError
from wsseg.fileio import write_json
from wsseg.methods.proposals import ProposalConfig, Proposals, selective_search
from wsseg.stages.common import image_progress
from wsseg.stages.make_peaks import parse_shard
from wsseg.stages.per_image import ImageProgress, open_run, run_per_image
from wsseg.store.project import Project

STAGE = "proposals"


def save_proposals(path: Path, proposals: Proposals, shape: tuple[int, int], seconds: float = 0.0) -> None:
    write_json(
        path,
        {
            "size": [int(shape[0]), int(shape[1])],
            "rles": encode_masks(proposals.masks),
            "objectness": [float(v) for v in proposals.objectness],
            "source": [int(v) for v in proposals.source],
            "level": [int(v) for v in proposals.level],
            "sources": list(proposals.sources),
            "seconds": seconds,
        },
    )


def load_proposals(path: Path) -> Proposals:
    """The proposals written by ``save_proposals`` (masks decoded to KxHxW bool)."""
    try:
        data = json.loads(Path(path).read_text())
        shape = tuple(data["size"])
        return Proposals(
            masks=decode_masks(data["rles"], shape),
            objectness=np.asarray(data["objectness"], np.float32),
            source=np.asarray(data["source"], np.int16),
            level=np.asarray(data["level"], np.int32),
            sources=tuple(data["sources"]),
        )
    except FileNotFoundError:
        raise BadInputError(str(path), "no proposals for this image: run `wsseg proposals` first") from None
    except (ValueError, KeyError, TypeError) as error:
        raise BadInputError(str(path), f"is not a proposals file ({error})") from None


def _one_image(task: tuple[str, str, str, dict[str, Any]]) -> dict[str, float]:
    """Worker: (image path, image name, output path, config) -> {"proposals": count, "seconds": time}."""
    image_path, name, out_path, config = task
    image = read_image(image_path, name)
    start = time.perf_counter()
    proposals = selective_search(image, ProposalConfig.from_dict(config))
    seconds = time.perf_counter() - start
    save_proposals(Path(out_path), proposals, image.shape[:2], seconds)
    return {"proposals": len(proposals), "seconds": seconds}


def make_proposals(
    project: Project,
    config: ProposalConfig | None = None,
    split: str | None = None,
    shard: tuple[int, int] = (0, 1),
    run_id: int | None = None,
    workers: int = 1,
    progress: ImageProgress | None = None,
) -> int:
    """Compute and store the proposals of the project's images (of ``split``, one shard); return the run id.

    The run's metrics: images, proposals (total) and seconds_per_image (mean compute time per image in
    one worker, reading and writing excluded)."""
    config = config or ProposalConfig()
    settings = {"proposals": config.to_dict(), "split": split, "shard": list(shard)}
    run_id = open_run(project, STAGE, settings, run_id)
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
        per_image = totals["seconds"] / max(1, len(tasks))
        return {"images": len(tasks), "proposals": totals["proposals"], "seconds_per_image": per_image}

    counts = ("proposals", "seconds")
    run_per_image(project, run_id, tasks, _one_image, None, counts, workers, progress, summary)
    return run_id


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
    shard = parse_shard(args.shard)
    with image_progress(args, "proposals") as progress:
        run_id = make_proposals(project, config, args.split, shard, args.run, args.workers, progress)
    print(f"proposals written: run {run_id}, {project.artifacts(STAGE, run_id)}")
