"""Import a source of tagged images into a project: a tagged folder or a zip of one, a COCO instance
JSON (its images found beside it or given), a PASCAL VOC folder, or a folder per class
(``wsseg.data.layouts``).

Bad files are reported by name (a ``Problem`` each) and skipped; every good file is imported. So are
images smaller than the pipeline can use (``wsseg.data.images.MIN_SIDE`` on either side). Images
already in the project (same content hash) are skipped. The source's splits are kept unless a split is
given; so are its image ids, file names and category ids (``ImageRecord.source_id``,
``Project.class_source_ids``). Ground-truth instance masks that come with the data (COCO, VOC, or the
``annotations.json`` beside a generated ``shapes`` folder) are stored in the project's
``ground_truth.json`` (COCO, ids and file names of the project), for evaluation only.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wsseg.data.coco import CocoDataset, read_coco
from wsseg.data.images import check_min_size, content_hash, read_image
from wsseg.data.layouts import (
    ImageSet,
    is_class_folders,
    read_class_folders,
    read_coco_set,
    read_voc_set,
    voc_root,
)
from wsseg.data.tagged_folder import (
    CSV_NAME,
    IMAGES_DIR,
    Problem,
    TaggedImage,
    extract_zip,
    is_tagged_zip,
    read_tagged_folder,
    read_tagged_zip,
)
from wsseg.errors import BadInputError
from wsseg.fileio import write_json
from wsseg.store.project import Project

GROUND_TRUTH = "ground_truth.json"
SHAPES_ANNOTATIONS = "annotations.json"
SOURCES = (
    "a folder with images/ and tags.csv, a COCO instance .json, a PASCAL VOC folder (JPEGImages/), a "
    "folder per class, or a .zip of any of them"
)


@dataclass
class ImportReport:
    """What an import did: stored file names, problems (bad files, named), skipped duplicates, and notes
    (what the user should know that is not an error, such as categories left out)."""

    imported: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    skipped_duplicates: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def check_source(source: str | Path, images: str | Path | None = None) -> Path:
    """``source`` as a Path once it exists (and ``images`` with it); BadInputError naming it otherwise,
    so that nothing is created for a source that is not there."""
    source = Path(source)
    if not source.exists():
        raise BadInputError(str(source), f"not found; expected {SOURCES}")
    if images is not None and not Path(images).is_dir():
        raise BadInputError(str(images), "not a folder (expected the folder of the COCO file's images)")
    return source


def read_source(source: str | Path, images: str | Path | None = None) -> ImageSet:
    """What ``source`` holds, read as an ``ImageSet`` whatever its layout (see the module docstring)."""
    source = check_source(source, images)
    if source.is_dir():
        if (source / CSV_NAME).is_file() or (source / IMAGES_DIR).is_dir():
            return _tagged_folder(source)
        if voc_root(source) is not None:
            return read_voc_set(source)
        if is_class_folders(source):
            return read_class_folders(source)
        raise BadInputError(str(source), f"no known layout; expected {SOURCES}")
    if source.suffix.lower() == ".zip":
        folder = read_tagged_zip(source)
        return ImageSet(items=folder.items, problems=list(folder.problems), classes=list(folder.classes))
    if source.suffix.lower() == ".json":
        return read_coco_set(source, images)
    raise BadInputError(str(source), f"unsupported source; expected {SOURCES}")


@contextmanager
def opened_source(source: str | Path, images: str | Path | None = None) -> Iterator[ImageSet]:
    """``read_source``, where a zip of a COCO, VOC or class-folder layout is first extracted (safely,
    as ``wsseg.data.tagged_folder.extract_zip`` checks) to a temporary folder that lasts while the
    caller reads the images. A tagged zip is read in memory, as ever."""
    source = check_source(source, images)
    if source.suffix.lower() != ".zip" or is_tagged_zip(source):
        yield read_source(source, images)
        return
    with tempfile.TemporaryDirectory(prefix="wsseg-zip-") as tmp:
        problems = extract_zip(source, tmp)
        found = read_source(unzipped_layout(Path(tmp), source))
        found.problems = problems + found.problems
        found.unzipped = (tmp, str(source))
        yield found


def unzipped_layout(folder: Path, zip_path: Path) -> Path:
    """What to read in an extracted zip: the folder (below any single top-level folder) when it is a
    tagged folder, a VOC folder or a folder per class, else its one COCO instance JSON."""
    while True:
        entries = [p for p in folder.iterdir() if not p.name.startswith(".") and p.name != "__MACOSX"]
        if len(entries) != 1 or not entries[0].is_dir():
            break
        folder = entries[0]
    if (folder / CSV_NAME).is_file() or voc_root(folder) is not None:
        return folder
    jsons = sorted(p for p in folder.rglob("*.json") if not p.name.startswith("."))
    if len(jsons) > 1:  # COCO's own archives hold captions and keypoints beside the instances
        jsons = [p for p in jsons if p.name.startswith("instances")] or jsons
    if len(jsons) == 1:
        return jsons[0]
    if len(jsons) > 1:
        names = ", ".join(p.relative_to(folder).as_posix() for p in jsons[:4])
        raise BadInputError(
            str(zip_path), f"holds several COCO files ({names}); zip one, or import it unzipped"
        )
    if is_class_folders(folder):
        return folder
    raise BadInputError(str(zip_path), f"no known layout inside; expected {SOURCES}")


def _tagged_folder(source: Path) -> ImageSet:
    folder = read_tagged_folder(source)
    coco = read_coco(source / SHAPES_ANNOTATIONS) if (source / SHAPES_ANNOTATIONS).is_file() else None
    found = ImageSet(items=folder.items, problems=list(folder.problems), classes=list(folder.classes))
    if coco is not None:
        found.truth = coco
        found.problems += coco.problems
        found.image_ids = {img.file_name: img.id for img in coco.images}
        found.classes = [coco.categories[k] for k in sorted(coco.categories)]
    return found


def import_source(
    project: Project,
    source: str | Path,
    split: str | None = None,
    progress: bool = False,
    images: str | Path | None = None,
) -> ImportReport:
    """Import ``source`` into ``project`` (see the module docstring). ``split``: the split of every
    image (None: the source's own, else ``train``); ``images``: a COCO file's image folder."""
    with opened_source(source, images) as found:
        report = _import(project, found, split, progress)
    if found.unzipped is not None:  # name the zip's members as the zip's, not by the temporary path
        tmp, zip_name = found.unzipped
        report.problems = [Problem(p.source.replace(tmp, f"{zip_name}:"), p.message) for p in report.problems]
    return report


def _import(project: Project, found: ImageSet, split: str | None, progress: bool) -> ImportReport:
    report = ImportReport(problems=list(found.problems), notes=list(found.notes))
    project.add_classes(
        found.classes or sorted({t for item in found.items for t in item.tags}), found.category_ids
    )
    stored: dict[int, int] = {}  # id in the source -> project image id
    for item in _bar(found.items, progress):
        # Named as the user knows it: images/<name> in a tagged folder, else the file's own path.
        label = str(item.path) if item.path is not None and found.image_names else f"images/{item.filename}"
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
        source_id = found.image_ids.get(item.filename)
        record = project.add_image(
            item.filename,
            data,
            image.shape[1],
            image.shape[0],
            digest,
            item.tags,
            split=split or found.splits.get(item.filename, "train"),
            source_id=source_id,
            source_name=found.image_names.get(item.filename),
        )
        report.imported.append(record.filename)
        if source_id is not None:
            stored[source_id] = record.id
    if found.truth is not None and stored:
        _merge_ground_truth(project, found.truth, stored)
    return report


def _bar(items: list[TaggedImage], progress: bool) -> Iterable[TaggedImage]:
    if not progress:
        return items
    from tqdm import tqdm

    return tqdm(items, desc="import", unit="image")


def _merge_ground_truth(project: Project, coco: CocoDataset, stored: dict[int, int]) -> None:
    """Add the instances of the imported images to the project's ground truth (COCO, project ids)."""
    path = project.root / GROUND_TRUTH
    doc: dict[str, Any] = (
        json.loads(path.read_text()) if path.exists() else {"images": [], "annotations": [], "categories": []}
    )
    classes = project.classes()
    doc["categories"] = [{"id": i + 1, "name": name} for i, name in enumerate(classes)]
    next_id = max((a["id"] for a in doc["annotations"]), default=0) + 1
    known = {img["id"] for img in doc["images"]}
    for coco_id, image_id in stored.items():
        if image_id in known:
            continue
        record = project.image(image_id)
        doc["images"].append(
            {"id": image_id, "file_name": record.filename, "width": record.width, "height": record.height}
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


def run_from_args(args: argparse.Namespace) -> None:
    """``wsseg import``: the source is checked before the project folder is made; refusals go to stderr;
    an import that stores nothing (and finds nothing already stored) is an error."""
    source = check_source(args.source, args.images)
    project = Project.create(args.project)
    report = import_source(project, source, split=args.split, progress=True, images=args.images)
    for problem in report.problems:
        print(f"refused {problem.source}: {problem.message}", file=sys.stderr)
    for note in report.notes:
        print(f"note: {note}")
    if report.skipped_duplicates:
        print(f"skipped {len(report.skipped_duplicates)} image(s) already in the project (same content)")
    if not report.imported and not report.skipped_duplicates:
        raise BadInputError(
            str(source), f"nothing imported ({len(report.problems)} refused); expected {SOURCES}"
        )
    splits = ", ".join(f"{name} {n}" for name, n in project.split_counts().items())
    print(f"imported {len(report.imported)} image(s) into {project.root} (images per split now: {splits})")
