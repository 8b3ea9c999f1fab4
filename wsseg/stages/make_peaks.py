"""Stage: class response maps, peaks and peak response maps of every image of a project.

For each image, writes ``artifacts/peaks/run-<id>/<image id>.npz`` holding ``crm`` (float16 Cxhxw),
``class_scores`` (float32 C), ``prms`` (float16 KxHxW, one per peak, each summing to 1) and ``peaks``
(float32 Kx4: class index, y, x, value; pixels), and the peaks in the database with the path of their
file. ``--shard i/n`` processes every n-th image starting at the i-th, so several machines can split a
project; all shards of one call share its run (pass ``--run`` to join one).

The classifier sees the image ``prepare_image`` makes: resized to its training size when it had one,
enlarged ``--scale`` times, and downscaled to at most ``wsseg.stages.recipes.WORKING_SIDE`` pixels on
its longer side; the maps and the peaks' pixels are that image's (the pseudo-mask stage and the views
map them onto the stored image). An image whose work fails (unreadable, out of memory) is skipped and
named in the run's metrics.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from wsseg.data.images import read_image
from wsseg.errors import BadInputError
from wsseg.fileio import write_npz
from wsseg.methods.prm import METHODS, PRMConfig, PRMResult, peak_response_maps
from wsseg.models.normalise import to_tensor
from wsseg.stages.common import image_progress, loaded_once
from wsseg.stages.per_image import (
    ImageProgress,
    open_run,
    print_skipped,
    resumed_config,
    run_per_image,
    task_filename,
    task_image_id,
)
from wsseg.stages.recipes import INFERENCE_PEAKS, WORKING_SIDE, InferencePeaks
from wsseg.stages.train_classifier import load_classifier
from wsseg.store.project import ImageRecord, Project

STAGE = "peaks"


def parse_shard(text: str) -> tuple[int, int]:
    """'i/n' -> (i, n) with 0 <= i < n."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise BadInputError("--shard", f"expected i/n such as 0/4, got {text!r}") from None
    if not (count >= 1 and 0 <= index < count):
        raise BadInputError("--shard", f"expected 0 <= i < n, got {text!r}")
    return index, count


def working_shape(height: int, width: int, max_side: int = WORKING_SIDE) -> tuple[int, int]:
    """(H, W) of a ``height`` x ``width`` image downscaled, aspect kept, so its longer side is at most
    ``max_side`` (``wsseg.stages.recipes.WORKING_SIDE``); a smaller image keeps its size."""
    if max(height, width) <= max_side:
        return height, width
    factor = max_side / max(height, width)
    return max(1, round(height * factor)), max(1, round(width * factor))


def prepared_shape(
    height: int, width: int, size: int | None, scale: float = 1.0, max_side: int = WORKING_SIDE
) -> tuple[int, int]:
    """(H, W) of ``prepare_image``'s image for a stored image of ``height`` x ``width``."""
    if size is not None:
        height = width = size
    return working_shape(max(1, round(height * scale)), max(1, round(width * scale)), max_side)


def prepare_image(
    project: Project, record: ImageRecord, size: int | None, scale: float = 1.0, max_side: int = WORKING_SIDE
) -> tuple[np.ndarray, torch.Tensor]:
    """The stored image (HxWx3 uint8, resized to the classifier's training size if it had one, then
    enlarged ``scale`` times, then downscaled to at most ``max_side`` on its longer side) and its
    normalised 1x3xHxW tensor."""
    return prepare_file(project.image_path(record), record.filename, size, scale, max_side)


def prepare_file(
    path: str | Path, name: str, size: int | None, scale: float = 1.0, max_side: int = WORKING_SIDE
) -> tuple[np.ndarray, torch.Tensor]:
    """``prepare_image`` of the image file ``path`` (``name``: how errors name it)."""
    image = read_image(path, name)
    if size is not None and image.shape[:2] != (size, size):
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    height, width = prepared_shape(*image.shape[:2], None, scale, max_side)
    if image.shape[:2] != (height, width):  # enlarged ``scale`` times and/or bounded: one resize
        smooth = cv2.INTER_LINEAR if height > image.shape[0] else cv2.INTER_AREA
        image = cv2.resize(image, (width, height), interpolation=smooth)
    return image, to_tensor(image)[None]


def check_scale(scale: float) -> float:
    """``--scale``: a factor in (0, 8]."""
    if not 0 < scale <= 8:
        raise BadInputError("--scale", f"expected a factor in (0, 8] such as 2, got {scale}")
    return float(scale)


def save_result(path: Path, result: PRMResult) -> None:
    peaks = np.array([[p.class_index, p.y, p.x, p.value] for p in result.peaks], dtype=np.float32).reshape(
        -1, 4
    )
    write_npz(
        path,
        crm=result.crm.astype(np.float16),
        class_scores=result.class_scores.astype(np.float32),
        prms=result.maps.astype(np.float16),
        peaks=peaks,
    )


def load_result(path: Path) -> dict[str, np.ndarray]:
    """The arrays written by ``save_result`` (float16 arrays returned as float32)."""
    with np.load(path) as data:
        return {k: data[k].astype(np.float32) if data[k].dtype == np.float16 else data[k] for k in data.files}


def make_peaks(
    project: Project,
    name: str = "classifier",
    prm_config: PRMConfig | None = None,
    shard: tuple[int, int] = (0, 1),
    run_id: int | None = None,
    progress: ImageProgress | None = None,
    split: str | None = None,
    scale: float = INFERENCE_PEAKS.scale,
    tagged_only: bool = False,
    workers: int = 1,
    cluster: str | None = None,
) -> int:
    """Compute and store CRMs, peaks and PRMs for the project's images (of ``split``, one shard); return
    the run id. ``scale``: each image is enlarged this many times before the classifier (its maps and
    the peaks' pixels are then at that scale; the pseudo-mask stage maps them back). Small objects
    packed together (nuclei) then span more cells of the stride-8 map, so touching ones get a peak
    each. ``prm_config`` and ``scale`` default to the recipe's (``wsseg.stages.recipes.INFERENCE_PEAKS``).
    ``tagged_only``: a tagged image gets peaks and PRMs of its tagged classes only (all the pseudo-mask
    stage uses there); an untagged one of every class.

    The images run in this process (``workers`` 1, the default: the model uses every core), in
    ``workers`` local processes, or on the Ray cluster at ``cluster``; each worker loads the classifier
    once, on its device (``--device``), and writes each image's file; this process stores the peaks."""
    prm_config = prm_config or INFERENCE_PEAKS.prm_config()
    scale = check_scale(scale)
    checkpoint = project.root / "checkpoints" / name
    _, classes, extra = loaded_once(load_classifier, str(checkpoint))
    if classes != project.classes()[: len(classes)]:
        raise BadInputError(
            name, f"classifier classes {classes} do not match the project's {project.classes()}"
        )
    trained = [r for r in project.runs("classifier") if r.status == "done" and r.config.get("name") == name]
    config: dict[str, Any] = {
        "classifier": name,
        "classifier_run": trained[0].id if trained else None,
        "prm": dataclasses.asdict(prm_config),
        "shard": list(shard),
        "split": split,
        "scale": scale,
        "max_side": WORKING_SIDE,
        "tagged_only": tagged_only,
    }
    run_id = open_run(project, STAGE, config, run_id, cluster)
    index = {c: k for k, c in enumerate(classes)}
    records = project.images(split=split)[shard[0] :: shard[1]]
    tasks = []
    for record in records:
        wanted = prm_config
        if tagged_only and record.tags:
            wanted = dataclasses.replace(
                prm_config, classes=tuple(index[t] for t in record.tags if t in index)
            )
        tasks.append(
            {
                "checkpoint": str(checkpoint),
                "image": str(project.image_path(record)),
                "filename": record.filename,
                "image_id": record.id,
                "size": extra.get("size"),
                "scale": scale,
                "prm": dataclasses.asdict(wanted),
                "out": str(project.artifact(STAGE, run_id, record.id, ".npz")),
            }
        )

    def store(task: dict[str, Any], peaks: list[list[float]]) -> dict[str, int]:
        relative = str(Path(task["out"]).relative_to(project.root))
        rows = [
            {"class_name": classes[int(k)], "y": y, "x": x, "value": value, "prm_path": relative}
            for k, y, x, value in peaks
        ]
        project.add_peaks(run_id, task["image_id"], rows)
        return {"peaks": len(rows)}

    run_per_image(
        project,
        run_id,
        tasks,
        _one_image,
        store,
        counts=("peaks",),
        workers=workers,
        progress=progress,
        name=task_filename,
        image_id=task_image_id,
        cluster=cluster,
    )
    return run_id


def _one_image(task: dict[str, Any]) -> list[list[float]]:
    """Worker: one image's CRM, peaks and PRMs, written to ``task["out"]``; returns its peaks (class
    index, y, x, value)."""
    model, _, _ = loaded_once(load_classifier, task["checkpoint"])
    _, tensor = prepare_file(task["image"], task["filename"], task["size"], task["scale"])
    try:
        result = peak_response_maps(model, tensor, _prm_config(task["prm"]))
    except RuntimeError as error:  # torch's allocators report running out of memory so
        if isinstance(error, torch.OutOfMemoryError) or "can't allocate memory" in str(error):
            raise MemoryError(str(error).splitlines()[0]) from None
        raise
    save_result(Path(task["out"]), result)
    return [[p.class_index, p.y, p.x, p.value] for p in result.peaks]


def _prm_config(stored: dict[str, Any]) -> PRMConfig:
    """The PRM settings a run stored (``dataclasses.asdict``; its tuple came back a list)."""
    classes = stored.get("classes")
    return PRMConfig(**{**stored, "classes": tuple(classes) if classes is not None else None})


def inference_from_args(args: argparse.Namespace) -> InferencePeaks:
    """The recipe's inference peaks (``wsseg.stages.recipes.INFERENCE_PEAKS``) with the options given to
    ``wsseg peaks`` (the command line leaves an option it was not given out of ``args``)."""
    names = [field.name for field in dataclasses.fields(InferencePeaks)]
    inference = dataclasses.replace(
        INFERENCE_PEAKS, **{k: getattr(args, k) for k in names if hasattr(args, k)}
    )
    if inference.method not in METHODS:
        raise BadInputError("--prm", f"expected one of {sorted(METHODS)}, got {inference.method!r}")
    return inference


def run_from_args(args: argparse.Namespace) -> None:
    inference = inference_from_args(args)
    project = Project(args.project)
    name, prm_config, scale = args.name, inference.prm_config(), inference.scale
    shard, run, split, tagged_only = parse_shard(args.shard), args.run, args.split, False
    if args.resume is not None:
        settings = resumed_config(project, STAGE, args.resume)
        name, prm_config, scale = settings["classifier"], _prm_config(settings["prm"]), settings["scale"]
        shard, run, split = tuple(settings["shard"]), args.resume, settings["split"]
        tagged_only = settings.get("tagged_only", False)
    with image_progress(args, "peaks") as progress:
        run_id = make_peaks(
            project,
            name,
            prm_config,
            shard,
            run,
            progress,
            split,
            scale,
            tagged_only,
            args.workers,
            args.cluster,
        )
    print(f"peaks written: run {run_id}, {project.artifacts(STAGE, run_id)}")
    print_skipped(project, run_id)
