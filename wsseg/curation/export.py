"""Export what a project made, as COCO or as a complete PASCAL VOC folder (``wsseg export``).

What (``WHATS``): the masks of a pseudo-masks run (all but the rejected ones), its curated set (accepted
or edited, optionally also those still proposed), a Mask R-CNN's predictions (an evaluate run), or the
pixel-label estimator's label maps (a ``ple_predict`` run; semantic only). The run is the newest
finished one of its stage unless one is given.

- **COCO** keeps the source's identity: an imported image keeps its original id and file name, a class
  its original category id (``ImageRecord.source_id``, ``Project.class_source_ids``); the others get the
  project's. Predictions are written as a COCO results list (with scores), ready for pycocotools or
  ``wsseg evaluate --predictions``; the rest as an instance document.
- **VOC** is complete and imports back into wsseg: ``JPEGImages/`` (the stored files), ``Annotations/``
  (one XML a image, its tags as objects), ``SegmentationClass/`` and ``SegmentationObject/`` (0
  background, class index + 1, instance 1..N; where masks overlap the later one wins),
  ``ImageSets/Segmentation/<split>.txt`` and ``labelmap.txt`` (background first).
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np

from wsseg.data.coco import coco_dict, decode_rle, encode_mask
from wsseg.data.images import read_image
from wsseg.data.layouts import LABELMAP
from wsseg.data.voc import IMAGE_DIR, masks_to_maps, voc_palette, write_voc
from wsseg.errors import BadInputError
from wsseg.fileio import write_json, write_text
from wsseg.stages.evaluate_ple import LABEL_MAPS, PREDICT_STAGE
from wsseg.stages.make_pseudo_masks import STAGE as PSEUDO_STAGE
from wsseg.stages.make_pseudo_masks import export_coco
from wsseg.store.project import ImageRecord, Project
from wsseg.store.results import CURATED

WHATS = ("pseudo", "curated", "predictions", "labels")
FORMATS = ("coco", "voc")
#: The stage whose run each kind of export reads.
RUN_STAGES = {
    "pseudo": PSEUDO_STAGE,
    "curated": PSEUDO_STAGE,
    "predictions": "evaluate",
    "labels": PREDICT_STAGE,
}


def is_curated(mask: dict[str, Any], include_proposed: bool = False) -> bool:
    """Whether a mask row belongs to the curated set."""
    return mask["status"] in CURATED or (include_proposed and mask["status"] == "proposed")


def export_curated_coco(
    project: Project, run_id: int, path: str | Path, include_proposed: bool = False
) -> dict:
    """Write the curated masks of a pseudo-masks run as a COCO instance JSON in the project's ids
    (category ids 1..K in the project's class order), for training; return the document."""
    return export_coco(project, run_id, Path(path), keep=lambda m: is_curated(m, include_proposed))


def export_curated_voc(
    project: Project, run_id: int, folder: str | Path, include_proposed: bool = False
) -> list[Path]:
    """``export(project, "curated", "voc", folder, run_id)``; returns the class maps (SegmentationClass
    PNGs) of the images that have a curated mask."""
    return export(project, "curated", "voc", folder, run_id, include_proposed).masked


@dataclass
class Exported:
    """What an export wrote: the run it read, images, instances (or labelled regions), and the files."""

    run_id: int
    images: int = 0
    instances: int = 0
    files: list[Path] = field(default_factory=list)
    masked: list[Path] = field(default_factory=list)
    """VOC: the class maps of the images with at least one mask."""


@dataclass(frozen=True)
class _Region:
    """One mask to write: HxW bool, its class name and its score (None: not a prediction)."""

    mask: np.ndarray
    class_name: str
    score: float | None = None


def _run_id(project: Project, what: str, run_id: int | None) -> int:
    stage = RUN_STAGES[what]
    runs = [r for r in project.runs(stage) if r.status == "done" and (run_id is None or r.id == run_id)]
    if not runs:
        wanted = f"run {run_id}" if run_id is not None else "a finished run"
        raise BadInputError(f"--what {what}", f"needs {wanted} of the {stage} stage; the project has none")
    return runs[0].id


def _regions(project: Project, what: str, run_id: int, include_proposed: bool) -> dict[int, list[_Region]]:
    """Image id -> the regions to export (every image of the project, possibly with none)."""
    out: dict[int, list[_Region]] = {r.id: [] for r in project.images()}
    if what in ("pseudo", "curated"):
        for m in project.pseudo_masks(run_id=run_id):
            keep = m["status"] != "rejected" if what == "pseudo" else is_curated(m, include_proposed)
            if keep:
                out[m["image_id"]].append(_Region(decode_rle(m["rle"]), m["class_name"]))
    elif what == "predictions":
        for p in project.predictions(run_id):
            out[p["image_id"]].append(_Region(decode_rle(p["rle"]), p["class_name"], float(p["score"])))
    else:
        run = next(r for r in project.runs(PREDICT_STAGE) if r.id == run_id)
        labels: list[str] = run.config["labels"]
        for image_id in out:
            path = project.artifact(LABEL_MAPS, run_id, image_id, ".png")
            if not path.is_file():
                continue
            values = read_image(path, str(path))[..., 0]
            for v in np.unique(values):
                if 0 <= v < len(labels) and labels[v] != "background":
                    out[image_id].append(_Region(values == v, labels[v]))
    return {k: [r for r in v if r.mask.any()] for k, v in out.items()}


def export(
    project: Project,
    what: str,
    fmt: str,
    out: str | Path,
    run_id: int | None = None,
    include_proposed: bool = False,
) -> Exported:
    """Export ``what`` (one of ``WHATS``) of ``run_id`` (default: the newest finished run) as ``fmt``
    (``coco``: the JSON file ``out``; ``voc``: the folder ``out``); see the module docstring."""
    if what not in WHATS:
        raise BadInputError("--what", f"expected one of {', '.join(WHATS)}, got {what!r}")
    if fmt not in FORMATS:
        raise BadInputError("--format", f"expected one of {', '.join(FORMATS)}, got {fmt!r}")
    run = _run_id(project, what, run_id)
    regions = _regions(project, what, run, include_proposed)
    records = {r.id: r for r in project.images()}
    report = Exported(run, images=len(records), instances=sum(len(v) for v in regions.values()))
    if fmt == "coco":
        _write_coco(project, records, regions, Path(out), results=what == "predictions")
        report.files = [Path(out)]
    else:
        report.files = _write_voc(project, records, regions, Path(out))
        masked = {f"{stem}.png" for k, stem in _stems(records.values()).items() if regions[k]}
        report.masked = [p for p in report.files if p.name in masked]
    return report


def _write_coco(
    project: Project,
    records: dict[int, ImageRecord],
    regions: dict[int, list[_Region]],
    path: Path,
    results: bool,
) -> None:
    classes, category = project.classes(), project.category_ids()
    annotations = []
    for image_id, record in records.items():
        for region in regions[image_id]:
            rle = encode_mask(region.mask)
            ys, xs = np.nonzero(region.mask)
            entry = {
                "id": len(annotations) + 1,
                "image_id": record.source_id if record.source_id is not None else record.id,
                "category_id": category[region.class_name],
                "segmentation": rle,
                "area": float(region.mask.sum()),
                "bbox": [float(xs.min()), float(ys.min()), float(np.ptp(xs) + 1), float(np.ptp(ys) + 1)],
                "iscrowd": 0,
            }
            if region.score is not None:
                entry["score"] = region.score
            annotations.append(entry)
    if results:
        write_json(
            path,
            [{k: a[k] for k in ("image_id", "category_id", "segmentation", "score")} for a in annotations],
        )
        return
    images = [
        {
            "id": r.source_id if r.source_id is not None else r.id,
            "file_name": r.source_name or r.filename,
            "width": r.width,
            "height": r.height,
        }
        for r in records.values()
    ]
    doc = coco_dict(images, classes, annotations)
    doc["categories"] = [{"id": category[n], "name": n, "supercategory": "object"} for n in classes]
    write_json(path, doc)


def _stems(records: Iterable[ImageRecord]) -> dict[int, str]:
    """Image id -> a VOC stem: the file name's stem, made unique."""
    out: dict[int, str] = {}
    taken: set[str] = set()
    for r in records:
        stem = Path(r.filename).stem
        unique, k = stem, 1
        while unique in taken:
            unique, k = f"{stem}_{k}", k + 1
        taken.add(unique)
        out[r.id] = unique
    return out


def _write_voc(
    project: Project, records: dict[int, ImageRecord], regions: dict[int, list[_Region]], folder: Path
) -> list[Path]:
    classes = project.classes()
    stems = _stems(records.values())
    written: list[Path] = []
    splits: dict[str, list[str]] = {}
    for image_id, record in records.items():
        stem = stems[image_id]
        suffix = Path(record.filename).suffix.lower() or ".jpg"
        target = folder / IMAGE_DIR / f"{stem}{suffix}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(project.image_path(record), target)
        found = regions[image_id]
        stack = (
            np.stack([r.mask for r in found]) if found else np.zeros((0, record.height, record.width), bool)
        )
        labels = [classes.index(r.class_name) for r in found]
        semantic, instance = masks_to_maps(stack, labels, (record.height, record.width))
        written.append(write_voc(folder, stem, semantic, instance)[0])
        objects = "".join(f"<object><name>{escape(tag)}</name></object>" for tag in record.tags)
        write_text(
            folder / "Annotations" / f"{stem}.xml",
            f"<annotation><filename>{escape(target.name)}</filename><size><width>{record.width}</width>"
            f"<height>{record.height}</height><depth>3</depth></size>{objects}</annotation>\n",
        )
        splits.setdefault(record.split, []).append(stem)
    for split, listed in splits.items():
        write_text(folder / "ImageSets" / "Segmentation" / f"{split}.txt", "".join(f"{s}\n" for s in listed))
    palette = voc_palette()
    lines = [
        f"{name}:{','.join(str(int(v)) for v in palette[k])}::"
        for k, name in enumerate(["background", *classes])
    ]
    write_text(folder / LABELMAP, "# label:color_rgb:parts:actions\n" + "\n".join(lines) + "\n")
    return written


def run_from_args(args: argparse.Namespace) -> None:
    """``wsseg export``."""
    project = Project(args.project)
    report = export(project, args.what, args.format, args.out, args.run, args.include_proposed)
    print(
        f"exported {report.instances} {'region' if args.what == 'labels' else 'instance'}(s) of run "
        f"{report.run_id} over {report.images} image(s) to {args.out} ({args.format})"
    )
