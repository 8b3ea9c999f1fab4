"""The published layouts of a tagged image set, read into one shape (``ImageSet``) the importer stores.

- **COCO** instance JSON, as COCO itself ships it (``annotations/instances_val2017.json`` beside
  ``val2017/``) and as CVAT and Label Studio export it (``images/`` beside or above the JSON): the image
  folder is given (``images_dir``) or found among the usual places (``coco_image_dirs``). Tags are the
  categories annotated in an image, crowd regions included.
- **PASCAL VOC** (``JPEGImages/``, ``SegmentationClass/``, ``SegmentationObject/``, ``Annotations/``,
  ``ImageSets/Segmentation/<split>.txt``): the images of the segmentation lists (else every image with
  a class map, else every annotated image), the list's name as the split, tags from the XML annotations
  or else from the class map, instances from the two maps. Class c of a map is line c of
  ``labelmap.txt`` when there is one (CVAT's, background first), else VOC's c-th class.
- **A folder per class** (torchvision's ImageFolder): ``<class>/<image>``, or ``<split>/<class>/<image>``
  when every top folder is a split name.

Every reader keeps the source's identity (its image ids and file names, its category ids) so that an
export can give them back, and reports bad entries as ``Problem``s instead of stopping.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ElementTree
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from wsseg.data.coco import CocoDataset, CocoImage, CocoInstance, encode_mask, read_coco
from wsseg.data.images import is_image_name
from wsseg.data.tagged_folder import Problem, TaggedImage
from wsseg.data.voc import (
    IMAGE_DIR,
    INSTANCE_DIR,
    SEMANTIC_DIR,
    VOC_CLASSES,
    read_voc_masks,
)
from wsseg.errors import BadInputError

SPLIT_NAMES = ("train", "val", "valid", "validation", "test", "trainval")
"""Top folder names an ImageFolder tree may use for its splits."""
LABELMAP = "labelmap.txt"
"""CVAT's class list of a VOC export (``name:r,g,b::`` a line, background first); wsseg writes one too."""


@dataclass
class ImageSet:
    """A source read for import. ``items``: the images with their tags (``filename`` as stored);
    ``splits``: filename -> the source's split for it (absent: the importer's default); ``truth``: ground
    truth instances keyed by ``image_ids[filename]`` (None when the source has none); ``image_ids`` and
    ``image_names``: filename -> the image's id and file name in the source; ``category_ids``: class
    name -> the source's category id; ``classes``: every class to declare, in the source's order;
    ``problems``: what was refused, by name; ``notes``: what the user should know that is not an error;
    ``unzipped``: (temporary folder, zip) when the source is a zip extracted there (problems name the zip)."""

    items: list[TaggedImage] = field(default_factory=list)
    splits: dict[str, str] = field(default_factory=dict)
    truth: CocoDataset | None = None
    image_ids: dict[str, int] = field(default_factory=dict)
    image_names: dict[str, str] = field(default_factory=dict)
    category_ids: dict[str, int] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unzipped: tuple[str, str] | None = None


def _size(path: Path) -> tuple[int, int]:
    """(width, height) from the file's header; (0, 0) when it cannot be read (the importer says why)."""
    try:
        with Image.open(path) as img:
            return img.size
    except (OSError, SyntaxError, ValueError):
        return 0, 0


# --------------------------------------------------------------------------- COCO


def coco_image_dirs(json_path: Path) -> list[Path]:
    """The folders a COCO file's images usually sit in, most likely first: ``images/`` beside it; for
    ``instances_<name>.json``, ``<name>/`` beside it or beside its folder (COCO's own layout); ``images/``
    and ``images/<name>/`` beside its folder (CVAT); and its own folder (Label Studio)."""
    here, up = json_path.parent, json_path.parent.parent
    name = json_path.stem.split("_", 1)[1] if "_" in json_path.stem else None
    candidates = [here / "images"]
    if name:
        candidates += [here / name, up / name]
    candidates += [up / "images"] + ([up / "images" / name] if name else []) + [here]
    seen: list[Path] = []
    for path in candidates:
        if path.is_dir() and path not in seen:
            seen.append(path)
    return seen


def coco_split(json_path: Path) -> str | None:
    """The split a COCO file names (``instances_val2017.json``: val; ``train.json``: train), else None."""
    name = json_path.stem.split("_", 1)[1] if "_" in json_path.stem else json_path.stem
    for split in ("train", "val", "test"):
        if name.lower().startswith(split):
            return split
    return None


def _pick_image_dir(json_path: Path, file_names: list[str]) -> Path | None:
    """The candidate folder holding the most of the first 50 ``file_names`` (None: it holds none)."""
    sample = file_names[:50]
    best, found = None, 0
    for folder in coco_image_dirs(json_path):
        hits = sum((folder / name).is_file() for name in sample)
        if hits > found:
            best, found = folder, hits
    return best


def read_coco_set(json_path: str | os.PathLike, images_dir: str | os.PathLike | None = None) -> ImageSet:
    """A COCO instance JSON and its images (from ``images_dir``, else the folder ``coco_image_dirs``
    finds with the most of them). Raises BadInputError when no image of the file can be found, naming
    the folders tried."""
    json_path = Path(json_path)
    listing = read_coco(json_path)
    names = [img.file_name for img in listing.images]
    if images_dir is None:
        folder = _pick_image_dir(json_path, names)
        if folder is None and names:
            tried = ", ".join(str(p) for p in coco_image_dirs(json_path)) or str(json_path.parent)
            raise BadInputError(
                str(json_path),
                f"none of its {len(names)} images (such as {names[0]!r}) was found in {tried}; "
                "give the image folder with --images DIR",
            )
    else:
        folder = Path(images_dir)
        if not folder.is_dir():
            raise BadInputError(str(folder), "not a folder (expected the folder of the COCO file's images)")
    coco = read_coco(json_path, folder)
    out = ImageSet(truth=coco, problems=list(coco.problems))
    split = coco_split(json_path)
    used: Counter[str] = Counter()
    for img in coco.images:
        tags = coco.tags(img.id)
        used.update(tags)
        out.items.append(TaggedImage(img.file_name, tags, img.width, img.height, path=img.path))
        out.image_ids[img.file_name] = img.id
        out.image_names[img.file_name] = img.file_name
        if split:
            out.splits[img.file_name] = split
    ordered = [coco.categories[k] for k in sorted(coco.categories)]
    out.classes = [name for name in ordered if used[name]]
    out.category_ids = {name: k for k, name in coco.categories.items() if used[name]}
    unused = [name for name in ordered if not used[name]]
    if unused:
        shown = ", ".join(unused[:10]) + (f" and {len(unused) - 10} more" if len(unused) > 10 else "")
        out.notes.append(
            f"{len(unused)} of the {len(ordered)} categories of {json_path.name} are annotated in no "
            f"imported image and were not added: {shown}"
        )
    return out


# --------------------------------------------------------------------------- PASCAL VOC


def voc_root(folder: Path) -> Path | None:
    """The VOC folder (holding ``JPEGImages/``) at ``folder``, or in ``VOC2012/``, ``VOCdevkit/VOC2012/``
    or any one ``VOC*`` folder below it; None when there is none."""
    if (folder / IMAGE_DIR).is_dir():
        return folder
    for below in (folder / "VOCdevkit", folder):
        if below.is_dir():
            found = sorted(p for p in below.glob("VOC*") if (p / IMAGE_DIR).is_dir())
            if len(found) == 1:
                return found[0]
    return None


def voc_class_names(root: Path) -> list[str]:
    """Class names by map value minus 1: ``labelmap.txt``'s lines after background, else VOC's 20."""
    path = root / LABELMAP
    if not path.is_file():
        return list(VOC_CLASSES)
    names = [
        line.split(":", 1)[0].strip()
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    return [n for n in names[1:] if n] if names and names[0].lower() == "background" else names


def _xml_tags(path: Path, problems: list[Problem]) -> tuple[str, ...] | None:
    """The object names of a VOC annotation XML (None when there is no file or it cannot be read)."""
    if not path.is_file():
        return None
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as error:
        problems.append(Problem(str(path), f"not a readable VOC annotation ({error}); tags from the masks"))
        return None
    return tuple(sorted({(o.findtext("name") or "").strip() for o in root.iter("object")} - {""}))


def _voc_stems(root: Path) -> tuple[list[str], dict[str, str]]:
    """The stems to import, in order, and the split of each (from ImageSets/Segmentation/*.txt)."""
    lists = sorted((root / "ImageSets" / "Segmentation").glob("*.txt"))
    splits: dict[str, str] = {}
    stems: list[str] = []
    for listing in lists:
        if listing.stem == "trainval" and len(lists) > 1:
            continue  # the union of train and val, which the other lists give with their names
        for line in listing.read_text(encoding="utf-8").split():
            if line not in splits:
                splits[line] = listing.stem
                stems.append(line)
    if not stems:
        source = root / SEMANTIC_DIR if (root / SEMANTIC_DIR).is_dir() else root / "Annotations"
        stems = sorted(p.stem for p in source.glob("*.png" if source.name == SEMANTIC_DIR else "*.xml"))
    return stems, splits


def read_voc_set(folder: str | os.PathLike) -> ImageSet:
    """A PASCAL VOC folder (see the module docstring). Raises BadInputError when it has no images."""
    root = voc_root(Path(folder))
    if root is None:
        raise BadInputError(str(folder), f"expected a PASCAL VOC folder with {IMAGE_DIR}/")
    names = voc_class_names(root)
    stems, splits = _voc_stems(root)
    if not stems:
        raise BadInputError(
            str(root),
            f"no image listed: expected ImageSets/Segmentation/*.txt, {SEMANTIC_DIR}/ or Annotations/",
        )
    out = ImageSet(classes=list(names))
    images: list[CocoImage] = []
    instances: dict[int, list[CocoInstance]] = {}
    for number, stem in enumerate(stems, start=1):
        found = [p for p in sorted((root / IMAGE_DIR).glob(f"{stem}.*")) if is_image_name(p.name)]
        if not found:
            out.problems.append(Problem(f"{IMAGE_DIR}/{stem}", "listed, but no image file has that name"))
            continue
        path = found[0]
        semantic, instance = root / SEMANTIC_DIR / f"{stem}.png", root / INSTANCE_DIR / f"{stem}.png"
        masks = None
        if semantic.is_file() and instance.is_file():
            try:
                masks = read_voc_masks(semantic, instance)
            except BadInputError as error:
                out.problems.append(Problem(error.source, f"{error.problem}; no masks for {path.name}"))
        labels = []
        if masks is not None:
            bad = [int(c) for c in masks.class_ids if not 1 <= c <= len(names)]
            if bad:
                out.problems.append(
                    Problem(str(semantic), f"class value(s) {bad} beyond the {len(names)} classes; no masks")
                )
                masks = None
            else:
                labels = [names[int(c) - 1] for c in masks.class_ids]
        tags = _xml_tags(root / "Annotations" / f"{stem}.xml", out.problems)
        if tags is None:
            if masks is None and not semantic.is_file():
                out.problems.append(
                    Problem(path.name, "has neither an annotation XML nor a class map: no tags")
                )
                continue
            tags = tuple(sorted(set(labels)))
        width, height = _size(path)
        out.items.append(TaggedImage(path.name, tags, width, height, path=path))
        out.image_ids[path.name] = number
        out.image_names[path.name] = path.name
        if stem in splits:
            out.splits[path.name] = splits[stem]
        if masks is not None:
            images.append(
                CocoImage(number, path.name, masks.semantic.shape[1], masks.semantic.shape[0], path)
            )
            pairs = zip(masks.masks, labels, strict=True)
            instances[number] = [
                _instance(number, k, mask, label, out.classes) for k, (mask, label) in enumerate(pairs)
            ]
    unknown = sorted({t for item in out.items for t in item.tags} - set(names))
    out.classes += unknown  # XML names beyond the class list (a custom VOC set without a labelmap)
    if images:
        categories = {k + 1: name for k, name in enumerate(out.classes)}
        out.truth = CocoDataset(images, categories, instances)
    return out


def _instance(image_id: int, k: int, mask: np.ndarray, label: str, names: list[str]) -> CocoInstance:
    rle = encode_mask(mask)
    compressed = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
    x, y, w, h = (float(v) for v in mask_utils.toBbox(compressed))
    return CocoInstance(
        id=image_id * 1000 + k,
        image_id=image_id,
        category_id=names.index(label) + 1,
        category=label,
        rle=compressed,
        bbox=(x, y, w, h),
        area=float(mask.sum()),
    )


# --------------------------------------------------------------------------- a folder per class


def read_class_folders(folder: str | os.PathLike) -> ImageSet:
    """``<class>/<image>`` (or ``<split>/<class>/<image>``): each image tagged with its folder's name.
    An image found under two classes is stored once with both tags."""
    root = Path(folder)
    tops = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    split_tree = bool(tops) and all(p.name.lower() in SPLIT_NAMES for p in tops)
    if split_tree:
        pairs = [(p.name, c) for p in tops for c in sorted(p.iterdir()) if c.is_dir()]
    else:
        pairs = [(None, p) for p in tops]
    out = ImageSet()
    tags: dict[str, set[str]] = {}
    paths: dict[str, Path] = {}
    for split, class_dir in pairs:
        if class_dir.name not in out.classes:
            out.classes.append(class_dir.name)
        for path in sorted(class_dir.rglob("*")):
            if not path.is_file() or path.name.startswith("."):
                continue
            if not is_image_name(path.name):
                out.problems.append(Problem(str(path.relative_to(root)), "not an image; skipped"))
                continue
            name = path.relative_to(class_dir).as_posix()
            name = f"{split}/{name}" if split else name
            tags.setdefault(name, set()).add(class_dir.name)
            paths.setdefault(name, path)
            if split:
                out.splits[name] = split
    for name, path in paths.items():
        width, height = _size(path)
        out.items.append(TaggedImage(name, tuple(sorted(tags[name])), width, height, path=path))
        out.image_names[name] = path.relative_to(root).as_posix()
    return out


def is_class_folders(folder: Path) -> bool:
    """Whether ``folder`` looks like a folder per class: sub-folders holding images, no ``images/``."""
    if (folder / "images").is_dir():
        return False
    for sub in folder.iterdir():
        if sub.is_dir() and any(is_image_name(p.name) for p in sub.rglob("*") if p.is_file()):
            return True
    return False
