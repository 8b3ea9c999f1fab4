"""Import of the published layouts, on small trees made here: COCO as COCO ships it, as CVAT exports it,
with --images; PASCAL VOC with its splits and masks; a folder per class. Each keeps the source's ids,
file names and splits, and the stored truth scores a perfect prediction at 1."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.store.test_importer import ROOT
from wsseg.data.coco import encode_mask
from wsseg.data.voc import masks_to_maps, write_voc
from wsseg.errors import BadInputError
from wsseg.methods.mask_map import mask_map
from wsseg.store.importer import import_source
from wsseg.store.instances import evaluation_split, truth_instances
from wsseg.store.project import Project


def _picture(seed: int, height: int = 48, width: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (height, width, 3), np.uint8)


def _disc(y: int, x: int, r: int = 8, shape: tuple[int, int] = (48, 64)) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - y) ** 2 + (xx - x) ** 2 <= r * r


def _coco_tree(root: Path, images_at: Path, ids: tuple[int, ...] = (139, 285, 632)) -> Path:
    """A COCO file ``root/annotations/instances_val2017.json`` with its images in ``images_at``: three
    images (ids as COCO's), category 18 "dog" on each, 1 "person" on the first, 3 "car" on none, and a
    crowd region of dogs on the second."""
    images_at.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for k, image_id in enumerate(ids):
        name = f"{image_id:012d}.jpg"
        cv2.imwrite(str(images_at / name), _picture(k))
        images.append({"id": image_id, "file_name": name, "width": 64, "height": 48})
        parts = [(18, _disc(16, 16), 0)] + ([(1, _disc(30, 45), 0)] if k == 0 else [])
        parts += [(18, _disc(32, 48, 10), 1)] if k == 1 else []
        for category, mask, crowd in parts:
            annotations.append({"id": 1000 + len(annotations), "image_id": image_id, "category_id": category,
                                "segmentation": encode_mask(mask), "area": float(mask.sum()),
                                "iscrowd": crowd})  # fmt: skip
    doc = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 18, "name": "dog"}],
    }
    path = root / "annotations" / "instances_val2017.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def _perfect_scores(project: Project) -> float:
    truth, classes = truth_instances(project, None)
    return mask_map(truth, truth, len(classes), iou_thresholds=(0.5,)).maps["map50"]


def test_coco_as_coco_ships_it_keeps_ids_names_and_split(tmp_path: Path) -> None:
    json_path = _coco_tree(tmp_path / "coco", tmp_path / "coco" / "val2017")
    project = Project.create(tmp_path / "p")
    report = import_source(project, json_path)
    assert len(report.imported) == 3 and not report.problems
    assert project.classes() == ["person", "dog"]  # "car" annotates nothing: left out, with a note
    assert any("car" in note and "not added" in note for note in report.notes)
    assert project.class_source_ids() == {"person": 1, "dog": 18}
    records = project.images()
    assert [(r.source_id, r.source_name, r.split) for r in records] == [
        (139, "000000000139.jpg", "val"),
        (285, "000000000285.jpg", "val"),
        (632, "000000000632.jpg", "val"),
    ]
    assert records[0].tags == ("dog", "person") and records[1].tags == ("dog",)
    assert evaluation_split(project, None) == "val"
    truth, _ = truth_instances(project, "val")
    assert truth[records[1].id].is_crowd.tolist() == [False, True]  # the crowd flag survived the import
    assert _perfect_scores(project) == pytest.approx(1.0)


def test_coco_as_cvat_exports_it_and_with_images_given(tmp_path: Path) -> None:
    cvat = _coco_tree(tmp_path / "cvat", tmp_path / "cvat" / "images")  # annotations/ beside images/
    assert len(import_source(Project.create(tmp_path / "a"), cvat).imported) == 3
    elsewhere = _coco_tree(tmp_path / "loose", tmp_path / "pictures")
    with pytest.raises(BadInputError, match="--images"):  # not in any usual place: say how to give it
        import_source(Project.create(tmp_path / "b"), elsewhere)
    given = import_source(Project.create(tmp_path / "c"), elsewhere, images=tmp_path / "pictures")
    assert len(given.imported) == 3


def _voc_tree(root: Path) -> None:
    """A VOC folder of 3 images: train lists a and b, val lists c; labelmap.txt names 2 classes; a has
    an XML annotation, b and c only masks."""
    names = ["background", "cat", "dog"]
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("a\nb\n")
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("c\n")
    (root / "ImageSets" / "Segmentation" / "trainval.txt").write_text("a\nb\nc\n")
    (root / "labelmap.txt").write_text(
        "# label:color_rgb:parts:actions\n" + "".join(f"{n}:0,0,0::\n" for n in names)
    )
    (root / "JPEGImages").mkdir()
    (root / "Annotations").mkdir()
    for k, stem in enumerate("abc"):
        cv2.imwrite(str(root / "JPEGImages" / f"{stem}.jpg"), _picture(10 + k))
        masks = np.stack([_disc(16, 16), _disc(30, 46)])
        labels = [0, 1] if stem != "c" else [1, 1]  # a, b: a cat and a dog; c: two dogs
        semantic, instance = masks_to_maps(masks, labels, (48, 64))
        band = _disc(16, 16) & ~_disc(16, 16, 7)  # VOC's boundary band on both maps: ignored
        semantic[band], instance[band] = 255, 255
        write_voc(root, stem, semantic, instance)
    (root / "Annotations" / "a.xml").write_text(
        "<annotation><object><name>cat</name></object><object><name>dog</name></object></annotation>"
    )


def test_pascal_voc_keeps_its_splits_tags_and_masks(tmp_path: Path) -> None:
    _voc_tree(tmp_path / "VOCdevkit" / "VOC2012")
    project = Project.create(tmp_path / "p")
    report = import_source(project, tmp_path / "VOCdevkit")  # found below the folder given
    assert sorted(report.imported) == ["a.jpg", "b.jpg", "c.jpg"] and not report.problems
    assert project.classes() == ["cat", "dog"]
    by_name = {r.filename: r for r in project.images()}
    assert {n: r.split for n, r in by_name.items()} == {"a.jpg": "train", "b.jpg": "train", "c.jpg": "val"}
    assert {n: r.tags for n, r in by_name.items()} == {
        "a.jpg": ("cat", "dog"),
        "b.jpg": ("cat", "dog"),
        "c.jpg": ("dog",),
    }
    truth, classes = truth_instances(project, None)
    c = truth[by_name["c.jpg"].id]
    assert c.labels.tolist() == [1, 1]
    assert c.masks.sum(axis=(1, 2)).tolist() == [int(_disc(16, 16, 7).sum()), int(_disc(30, 46).sum())]
    a = truth[by_name["a.jpg"].id]  # the boundary band belongs to no instance
    assert a.masks[0].sum() == int(_disc(16, 16, 7).sum()) and classes == ["cat", "dog"]
    assert _perfect_scores(project) == pytest.approx(1.0)


def test_a_folder_per_class_with_split_folders(tmp_path: Path) -> None:
    for split, cls, k in (("train", "cat", 0), ("train", "dog", 1), ("train", "dog", 2), ("val", "cat", 3)):
        folder = tmp_path / "src" / split / cls
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{k}.png"), _picture(20 + k))
    (tmp_path / "src" / "train" / "dog" / "notes.txt").write_text("not an image")
    project = Project.create(tmp_path / "p")
    report = import_source(project, tmp_path / "src")
    assert len(report.imported) == 4
    assert [p.source for p in report.problems] == ["train/dog/notes.txt"]
    assert sorted((r.split, r.tags) for r in project.images()) == [
        ("train", ("cat",)),
        ("train", ("dog",)),
        ("train", ("dog",)),
        ("val", ("cat",)),
    ]


def test_the_command_line_says_when_nothing_is_imported(tmp_path: Path) -> None:
    json_path = _coco_tree(tmp_path / "coco", tmp_path / "coco" / "val2017")
    for image in (tmp_path / "coco" / "val2017").iterdir():
        image.write_bytes(b"not a picture")
    done = subprocess.run(
        [sys.executable, "-m", "wsseg", "import", str(json_path), "--project", str(tmp_path / "p")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 2 and "nothing imported (3 refused)" in done.stderr, done.stderr
    assert done.stderr.count("refused ") == 3 and "Traceback" not in done.stderr


def _zip(folder: Path, out: Path, extra: dict[str, bytes] | None = None) -> Path:
    """``folder`` zipped as a user would (its own name the one top-level folder), plus ``extra`` members."""
    with zipfile.ZipFile(out, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, Path(folder.name) / path.relative_to(folder))
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return out


def test_zips_of_coco_voc_and_class_folders_import_as_the_folders_do(tmp_path: Path) -> None:
    """The app's uploads are zips: each published layout zipped imports the same images, splits and
    truth as the folder itself; an unsafe member is named (by the zip) and skipped."""
    _coco_tree(tmp_path / "coco", tmp_path / "coco" / "val2017")
    coco_zip = _zip(tmp_path / "coco", tmp_path / "coco.zip", {"../evil.jpg": b"x"})
    project = Project.create(tmp_path / "p1")
    report = import_source(project, coco_zip)
    assert len(report.imported) == 3
    assert [p.source for p in report.problems] == [f"{coco_zip}:../evil.jpg"]
    assert [(r.source_id, r.split) for r in project.images()] == [(139, "val"), (285, "val"), (632, "val")]
    assert _perfect_scores(project) == pytest.approx(1.0)

    _voc_tree(tmp_path / "voc" / "VOC2012")
    project = Project.create(tmp_path / "p2")
    report = import_source(project, _zip(tmp_path / "voc", tmp_path / "voc.zip"))
    assert sorted(report.imported) == ["a.jpg", "b.jpg", "c.jpg"] and not report.problems
    assert sorted(r.split for r in project.images()) == ["train", "train", "val"]

    for cls, k in (("cat", 0), ("dog", 1)):
        (tmp_path / "classes" / cls).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "classes" / cls / f"{k}.png"), _picture(30 + k))
    project = Project.create(tmp_path / "p3")
    report = import_source(project, _zip(tmp_path / "classes", tmp_path / "classes.zip"))
    assert sorted(r.tags for r in project.images()) == [("cat",), ("dog",)]


def test_a_zip_of_no_known_layout_says_so(tmp_path: Path) -> None:
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "readme.txt").write_text("hello")
    with pytest.raises(BadInputError, match="no known layout inside"):
        import_source(Project.create(tmp_path / "p"), _zip(tmp_path / "stuff", tmp_path / "stuff.zip"))
