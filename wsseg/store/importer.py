"""Import a tagged folder, a zip of one, or a COCO instance JSON into a project.

Bad files are reported by name (a ``Problem`` each) and skipped; every good file is imported. So are
images smaller than the pipeline can use (``wsseg.data.images.MIN_SIDE`` on either side). Images
already in the project (same content hash) are skipped. Ground-truth instance masks that come with the
data (a COCO JSON, or the ``annotations.json`` beside a generated ``shapes`` folder) are stored in the
project's ``ground_truth.json`` (COCO, ids and file names of the project), for evaluation only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wsseg.data.coco import CocoDataset, read_coco
from wsseg.data.images import check_min_size, content_hash, read_image
from wsseg.data.tagged_folder import Problem, TaggedImage, read_tagged_folder, read_tagged_zip
from wsseg.errors import BadInputError
from wsseg.fileio import write_json
from wsseg.store.project import Project

GROUND_TRUTH = "ground_truth.json"
SHAPES_ANNOTATIONS = "annotations.json"


@dataclass
class ImportReport:
    """What an import did: stored file names, problems (bad files, named), and skipped duplicates."""

    imported: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    skipped_duplicates: list[str] = field(default_factory=list)


def import_source(
    project: Project, source: str | Path, split: str = "train", progress: bool = False
) -> ImportReport:
    """Import ``source`` (folder, .zip or .json) into ``project``; see the module docstring."""
    source = Path(source)
    if not source.exists():
        raise BadInputError(str(source), "not found; expected a folder, a .zip or a COCO .json")
    if source.is_dir():
        folder = read_tagged_folder(source)
        coco = read_coco(source / SHAPES_ANNOTATIONS) if (source / SHAPES_ANNOTATIONS).is_file() else None
        problems = list(folder.problems) + (list(coco.problems) if coco is not None else [])
        return _import_items(project, folder.items, problems, split, coco, progress)
    if source.suffix.lower() == ".zip":
        folder = read_tagged_zip(source)
        return _import_items(project, folder.items, list(folder.problems), split, None, progress)
    if source.suffix.lower() == ".json":
        return _import_coco(project, source, split, progress)
    raise BadInputError(str(source), "unsupported source; expected a folder, a .zip or a COCO .json")


def _import_coco(project: Project, json_path: Path, split: str, progress: bool) -> ImportReport:
    image_dir = json_path.parent / "images" if (json_path.parent / "images").is_dir() else json_path.parent
    coco = read_coco(json_path, image_dir)
    items = [
        TaggedImage(img.file_name, coco.tags(img.id), img.width, img.height, path=img.path)
        for img in coco.images
        if img.path is not None
    ]
    return _import_items(project, items, list(coco.problems), split, coco, progress)


def _import_items(
    project: Project,
    items: list[TaggedImage],
    problems: list[Problem],
    split: str,
    coco: CocoDataset | None,
    progress: bool,
) -> ImportReport:
    report = ImportReport(problems=problems)
    if coco is not None:
        project.add_classes(coco.categories[k] for k in sorted(coco.categories))
    else:
        project.add_classes(sorted({t for item in items for t in item.tags}))
    coco_by_name = {img.file_name: img.id for img in coco.images} if coco is not None else {}
    stored: dict[int, tuple[int, str]] = {}  # coco image id -> (project image id, stored name)
    for item in _bar(items, progress):
        label = f"images/{item.filename}"
        try:
            data = item.read_bytes()
            image = read_image(data, label)
            check_min_size(image.shape[1], image.shape[0], label)
        except BadInputError as error:
            report.problems.append(Problem(label, error.problem))
            continue
        except OSError as error:
            report.problems.append(Problem(label, f"could not be read ({error.strerror or error})"))
            continue
        digest = content_hash(data)
        if project.find_by_hash(digest) is not None:
            report.skipped_duplicates.append(item.filename)
            continue
        record = project.add_image(
            item.filename, data, image.shape[1], image.shape[0], digest, item.tags, split=split
        )
        report.imported.append(record.filename)
        if item.filename in coco_by_name:
            stored[coco_by_name[item.filename]] = (record.id, record.filename)
    if coco is not None and stored:
        _merge_ground_truth(project, coco, stored)
    return report


def _bar(items: list[TaggedImage], progress: bool) -> Iterable[TaggedImage]:
    if not progress:
        return items
    from tqdm import tqdm

    return tqdm(items, desc="import", unit="image")


def _merge_ground_truth(project: Project, coco: CocoDataset, stored: dict[int, tuple[int, str]]) -> None:
    """Add the instances of the imported images to the project's ground truth (COCO, project ids)."""
    path = project.root / GROUND_TRUTH
    doc: dict[str, Any] = (
        json.loads(path.read_text()) if path.exists() else {"images": [], "annotations": [], "categories": []}
    )
    classes = project.classes()
    doc["categories"] = [{"id": i + 1, "name": name} for i, name in enumerate(classes)]
    next_id = max((a["id"] for a in doc["annotations"]), default=0) + 1
    known = {img["id"] for img in doc["images"]}
    for coco_id, (image_id, filename) in stored.items():
        if image_id in known:
            continue
        record = project.image(image_id)
        doc["images"].append(
            {"id": image_id, "file_name": filename, "width": record.width, "height": record.height}
        )
        for inst in coco.instances.get(coco_id, []):
            rle = dict(inst.rle)
            counts = rle["counts"]
            rle["counts"] = counts.decode("ascii") if isinstance(counts, bytes) else counts
            doc["annotations"].append(
                {
                    "id": next_id,
                    "image_id": image_id,
                    "category_id": classes.index(inst.category) + 1,
                    "segmentation": rle,
                    "area": float(inst.area),
                    "bbox": list(inst.bbox),
                    "iscrowd": int(inst.iscrowd),
                }
            )
            next_id += 1
    write_json(path, doc)


def ground_truth(project: Project) -> CocoDataset | None:
    """The project's ground-truth instances, or None when its data came without masks."""
    path = project.root / GROUND_TRUTH
    return read_coco(path) if path.exists() else None
