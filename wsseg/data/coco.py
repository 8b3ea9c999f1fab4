"""COCO instance JSON: read (RLE or polygon masks) and write (compressed RLE) through pycocotools.

Boxes are COCO's ``[x, y, width, height]`` in pixels; category ids in files written here are
1..K in the order of the ``categories`` given. Masks are decoded lazily, so a large annotation file
costs its RLE strings in memory, not its pixels.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from wsseg.data.tagged_folder import Problem
from wsseg.errors import BadInputError
from wsseg.fileio import write_json

BOX_TOLERANCE = 1.0
"""Pixels a box or polygon may stick out of its image before the annotation is dropped."""


@dataclass(frozen=True)
class CocoImage:
    """An image entry: ``id`` (int), ``file_name`` (relative to the image folder), size in pixels.

    ``path`` is set when an image folder was given and the file exists in it.
    """

    id: int
    file_name: str
    width: int
    height: int
    path: Path | None = None


@dataclass(frozen=True)
class CocoInstance:
    """One annotation of an image.

    ``rle``: compressed RLE dict (``size`` [h, w], ``counts`` bytes); ``mask`` decodes it to HxW bool.
    ``bbox``: xywh float pixels. ``score``: set for detection results, else None.
    """

    id: int
    image_id: int
    category_id: int
    category: str
    rle: dict
    bbox: tuple[float, float, float, float]
    area: float
    iscrowd: bool = False
    score: float | None = None

    @property
    def mask(self) -> np.ndarray:
        """HxW bool."""
        return decode_rle(self.rle)


@dataclass(frozen=True)
class CocoDataset:
    """A COCO file's images, categories (id -> name), instances per image id, and what was dropped."""

    images: list[CocoImage]
    categories: dict[int, str]
    instances: dict[int, list[CocoInstance]]
    problems: list[Problem] = field(default_factory=list)

    def tags(self, image_id: int) -> tuple[str, ...]:
        """Sorted category names annotated in an image (its image-level tags)."""
        return tuple(sorted({inst.category for inst in self.instances.get(image_id, [])}))


# --------------------------------------------------------------------------- masks <-> RLE


def encode_mask(mask: np.ndarray) -> dict:
    """HxW bool -> compressed RLE dict with ``counts`` as str (JSON-ready)."""
    rle = mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: Mapping[str, Any]) -> np.ndarray:
    """Compressed RLE (counts str or bytes) or uncompressed RLE (counts list) -> HxW bool."""
    with warnings.catch_warnings():
        # pycocotools' Cython decoder trips numpy 2's __array__(copy=...) deprecation; harmless.
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(_compressed(rle)).astype(bool)


def encode_masks(masks: np.ndarray) -> list[dict]:
    """KxHxW bool -> K compressed RLE dicts (``encode_mask`` of each, in one pycocotools call)."""
    masks = np.asarray(masks, bool)
    if len(masks) == 0:
        return []
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0), dtype=np.uint8))
    return [{"size": [int(v) for v in r["size"]], "counts": r["counts"].decode("ascii")} for r in rles]


def decode_masks(rles: Sequence[Mapping[str, Any]], shape: tuple[int, int] = (0, 0)) -> np.ndarray:
    """K RLE dicts (as ``decode_rle`` takes) -> KxHxW bool; ``shape`` gives H, W when the list is empty."""
    if len(rles) == 0:
        return np.zeros((0, *shape), bool)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # as in decode_rle
        return mask_utils.decode([_compressed(r) for r in rles]).transpose(2, 0, 1).astype(bool)


def _compressed(rle: Mapping[str, Any]) -> dict:
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, list):
        return mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    return {"size": [h, w], "counts": counts}


# --------------------------------------------------------------------------- reading


def _load_json(json_path: Path) -> Any:
    """The parsed JSON of ``json_path``; BadInputError naming it when it is missing or not JSON."""
    try:
        return json.loads(json_path.read_bytes())
    except FileNotFoundError:
        raise BadInputError(str(json_path), "file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInputError(str(json_path), f"not valid JSON ({exc})") from None


def read_coco(json_path: str | os.PathLike, image_dir: str | os.PathLike | None = None) -> CocoDataset:
    """Read a COCO instance JSON; every bad entry is dropped with a Problem naming it.

    Dropped: images without ``id``/``file_name``/``width``/``height`` (or whose file is missing from
    ``image_dir`` when one is given), annotations of unknown images or categories, with a missing or
    malformed segmentation, an empty mask, or a mask or box outside the image.
    Raises BadInputError if the file is not JSON or lacks the ``images`` list.
    """
    json_path = Path(json_path)
    name = json_path.name
    doc = _load_json(json_path)
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        raise BadInputError(str(json_path), "expected a COCO object with an 'images' list")
    problems: list[Problem] = []
    categories = _read_categories(doc.get("categories", []), name, problems)
    images, dropped = _read_images(doc["images"], name, image_dir, problems)
    by_id = {img.id: img for img in images}
    instances: dict[int, list[CocoInstance]] = {img.id: [] for img in images}
    annotations = doc.get("annotations", [])
    if not isinstance(annotations, list):
        problems.append(Problem(name, "'annotations' is not a list; no annotation read"))
        annotations = []
    for k, ann in enumerate(annotations):
        if isinstance(ann, dict) and _hashable(ann.get("image_id")) and ann.get("image_id") in dropped:
            continue  # its image was dropped, and reported
        where = f"annotation {ann.get('id', f'#{k}') if isinstance(ann, dict) else f'#{k}'}"
        try:
            inst = _read_annotation(ann, by_id, categories, k)
        except (ValueError, TypeError) as exc:
            problems.append(Problem(name, f"{where}: {exc}; dropped"))
            continue
        instances[inst.image_id].append(inst)
    return CocoDataset(images, categories, instances, problems)


def read_coco_results(
    json_path: str | os.PathLike, sizes: Mapping[int, tuple[int, int]], categories: Mapping[int, str]
) -> tuple[dict[int, list[CocoInstance]], list[Problem]]:
    """A COCO results file (a list of ``image_id``, ``category_id``, ``segmentation``, ``score``) read
    against known images (id -> (height, width)) and categories (id -> name): the detections by image
    id, and a Problem for each one dropped (unknown image or category, bad mask, no score)."""
    json_path = Path(json_path)
    doc = _load_json(json_path)
    if not isinstance(doc, list):
        raise BadInputError(str(json_path), "expected a COCO results list ([{image_id, category_id, ...}])")
    images = {k: CocoImage(k, str(k), w, h) for k, (h, w) in sizes.items()}
    found: dict[int, list[CocoInstance]] = {}
    problems: list[Problem] = []
    for k, entry in enumerate(doc):
        try:
            if not isinstance(entry, dict) or not isinstance(entry.get("score"), int | float):
                raise ValueError("expected an object with a numeric 'score'")
            inst = _read_annotation(entry, images, categories, k)
        except (ValueError, TypeError) as exc:
            problems.append(Problem(json_path.name, f"result #{k}: {exc}; dropped"))
            continue
        found.setdefault(inst.image_id, []).append(inst)
    return found, problems


def _read_categories(entries: Any, name: str, problems: list[Problem]) -> dict[int, str]:
    categories: dict[int, str] = {}
    if not isinstance(entries, list):
        problems.append(Problem(name, "'categories' is not a list; no category read"))
        return categories
    for k, cat in enumerate(entries):
        if not isinstance(cat, dict) or not isinstance(cat.get("id"), int) or not cat.get("name"):
            problems.append(Problem(name, f"category #{k}: expected an int 'id' and a 'name'; dropped"))
        elif cat["id"] in categories:
            problems.append(Problem(name, f"category id {cat['id']} appears twice; kept the first"))
        else:
            categories[cat["id"]] = str(cat["name"])
    return categories


def _hashable(value: Any) -> bool:
    return isinstance(value, int | str | float | None)


def _read_images(
    entries: list, name: str, image_dir: Any, problems: list[Problem]
) -> tuple[list[CocoImage], set[Any]]:
    """The good images, and the ids of dropped ones (their annotations are dropped without a word)."""
    images: list[CocoImage] = []
    seen: set[int] = set()
    dropped: set[Any] = set()
    for k, img in enumerate(entries):
        keys = ("id", "file_name", "width", "height")
        missing = [key for key in keys if not isinstance(img, dict) or key not in img]
        ok = not missing and isinstance(img["id"], int)
        ok = ok and all(isinstance(img[s], int) and img[s] > 0 for s in keys[2:])
        if not ok:
            if isinstance(img, dict) and _hashable(img.get("id")) and img.get("id") not in seen:
                dropped.add(img.get("id"))
            expected = (
                f"missing {', '.join(missing)}"
                if missing
                else "expected an int id and positive int width/height"
            )
            problems.append(Problem(name, f"image #{k}: {expected}; dropped with its annotations"))
            continue
        if img["id"] in seen:
            problems.append(Problem(name, f"image id {img['id']} appears twice; kept the first"))
            continue
        path = None
        if image_dir is not None:
            path = Path(image_dir) / str(img["file_name"])
            if not path.is_file():
                problems.append(Problem(str(path), f"image {img['id']} of {name} not found; dropped"))
                dropped.add(img["id"])
                continue
        seen.add(img["id"])
        images.append(CocoImage(img["id"], str(img["file_name"]), img["width"], img["height"], path))
    return images, dropped


def _read_annotation(
    ann: Any, images: dict[int, CocoImage], categories: dict[int, str], k: int
) -> CocoInstance:
    if not isinstance(ann, dict):
        raise ValueError("not an object")
    for key in ("image_id", "category_id", "segmentation"):
        if key not in ann:
            raise ValueError(f"missing '{key}'")
    image = images.get(ann["image_id"])
    if image is None:
        raise ValueError(f"unknown image_id {ann['image_id']!r}")
    if ann["category_id"] not in categories:
        raise ValueError(f"unknown category_id {ann['category_id']!r}")
    h, w = image.height, image.width
    rle = _segmentation_to_rle(ann["segmentation"], h, w)
    area = float(mask_utils.area(rle))
    if area == 0:
        raise ValueError("empty mask")
    if "bbox" in ann:
        bbox = ann["bbox"]
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, int | float) for v in bbox)):
            raise ValueError(f"bbox {bbox!r} is not [x, y, width, height]")
        x, y, bw, bh = (float(v) for v in bbox)
        t = BOX_TOLERANCE
        if bw < 0 or bh < 0 or x < -t or y < -t or x + bw > w + t or y + bh > h + t:
            raise ValueError(f"bbox {bbox} lies outside the {w}x{h} image")
    else:
        x, y, bw, bh = (float(v) for v in mask_utils.toBbox(rle))
    score = ann.get("score")
    return CocoInstance(
        id=int(ann.get("id", k + 1)),
        image_id=image.id,
        category_id=ann["category_id"],
        category=categories[ann["category_id"]],
        rle=rle,
        bbox=(x, y, bw, bh),
        area=area,
        iscrowd=bool(ann.get("iscrowd", 0)),
        score=None if score is None else float(score),
    )


def _segmentation_to_rle(seg: Any, h: int, w: int) -> dict:
    if isinstance(seg, dict):
        if "size" not in seg or "counts" not in seg:
            raise ValueError("RLE segmentation without 'size' and 'counts'")
        if [int(v) for v in seg["size"]] != [h, w]:
            raise ValueError(f"mask size {list(seg['size'])} differs from the image's [{h}, {w}]")
        try:
            rle = _compressed(seg)
            mask_utils.area(rle)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"malformed RLE ({exc})") from None
        return rle
    if isinstance(seg, list) and seg:
        polygons = []
        for poly in seg:
            ok = isinstance(poly, list) and len(poly) >= 6 and len(poly) % 2 == 0
            if not ok or not all(isinstance(v, int | float) for v in poly):
                raise ValueError("a polygon is not a flat list of at least 3 x,y points")
            xs, ys = np.asarray(poly[0::2], float), np.asarray(poly[1::2], float)
            t = BOX_TOLERANCE
            if xs.min() < -t or ys.min() < -t or xs.max() > w + t or ys.max() > h + t:
                raise ValueError(f"polygon lies outside the {w}x{h} image")
            polygons.append([float(v) for v in poly])
        return mask_utils.merge(mask_utils.frPyObjects(polygons, h, w))
    raise ValueError("segmentation is neither RLE nor a list of polygons")


# --------------------------------------------------------------------------- writing


def annotations_for_image(
    image_id: int,
    masks: np.ndarray,
    labels: Sequence[int],
    scores: Sequence[float] | None = None,
    first_id: int = 1,
) -> list[dict]:
    """COCO annotation dicts for one image's NxHxW bool masks and N label indices (category id = label+1).

    Empty masks are skipped. Ids count up from ``first_id``.
    """
    out = []
    for k, mask in enumerate(masks):
        rle = encode_mask(mask)
        area = float(mask_utils.area(_compressed(rle)))
        if area == 0:
            continue
        bbox = [float(v) for v in mask_utils.toBbox(_compressed(rle))]
        ann = {
            "id": first_id + len(out),
            "image_id": int(image_id),
            "category_id": int(labels[k]) + 1,
            "segmentation": rle,
            "area": area,
            "bbox": bbox,
            "iscrowd": 0,
        }
        if scores is not None:
            ann["score"] = float(scores[k])
        out.append(ann)
    return out


def coco_dict(
    images: Iterable[CocoImage | Mapping], categories: Sequence[str], annotations: list[dict]
) -> dict:
    """The COCO document for images, category names (ids 1..K) and annotation dicts."""
    image_entries = []
    for img in images:
        if isinstance(img, CocoImage):
            img = {"id": img.id, "file_name": img.file_name, "width": img.width, "height": img.height}
        image_entries.append({k: img[k] for k in ("id", "file_name", "width", "height")})
    return {
        "info": {"description": "written by wsseg"},
        "images": image_entries,
        "categories": [{"id": k + 1, "name": n, "supercategory": "object"} for k, n in enumerate(categories)],
        "annotations": annotations,
    }


def write_coco(
    path: str | os.PathLike,
    images: Sequence[CocoImage | Mapping],
    categories: Sequence[str],
    instances_per_image: Iterable[tuple[np.ndarray, Sequence[int]]],
    scores: Iterable[Sequence[float]] | None = None,
) -> dict:
    """Write a COCO instance JSON atomically and return it.

    ``images``: CocoImage or dicts with id, file_name, width, height. ``categories``: names, given
    ids 1..K. ``instances_per_image``: for each image in order, (NxHxW bool masks, N label indices
    into ``categories``); may be a generator. ``scores``: per image N floats, for result files.
    """
    annotations: list[dict] = []
    score_iter = iter(scores) if scores is not None else None
    pairs = zip(images, instances_per_image, strict=True)
    for img, (masks, labels) in pairs:
        image_id = img.id if isinstance(img, CocoImage) else img["id"]
        size = (img.height, img.width) if isinstance(img, CocoImage) else (img["height"], img["width"])
        masks = np.asarray(masks, dtype=bool)
        if len(masks) and masks.shape[1:] != tuple(size):
            raise BadInputError(
                str(path), f"masks of image {image_id} are {masks.shape[1:]}, expected {size}"
            )
        if len(labels) != len(masks) or any(not 0 <= int(v) < len(categories) for v in labels):
            raise BadInputError(
                str(path), f"labels of image {image_id} must be N indices into the categories"
            )
        image_scores = next(score_iter) if score_iter is not None else None
        annotations += annotations_for_image(image_id, masks, labels, image_scores, len(annotations) + 1)
    doc = coco_dict(images, categories, annotations)
    write_json(path, doc)
    return doc
