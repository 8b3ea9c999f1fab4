"""Uploads from the browser go through the importer: bad files named and skipped, the rest imported."""

import io
import zipfile
from pathlib import Path

import cv2
import numpy as np

from wsseg.store.project import Project
from wsseg.views.uploads import import_uploads


def _png(value: int, size: int = 32) -> bytes:  # MIN_SIDE: smaller ones are refused
    ok, data = cv2.imencode(".png", np.full((size, size, 3), value, np.uint8))
    assert ok
    return data.tobytes()


def test_images_with_a_csv_import_and_bad_files_are_named(tmp_path: Path) -> None:
    project = Project.create(tmp_path / "p")
    files = [
        ("a.png", _png(10)),
        ("b.png", _png(20)),
        ("broken.png", b"not an image at all"),
        ("stray.png", _png(30)),
        ("tags.csv", b"filename,tags\na.png,cat\nb.png,cat;dog\nbroken.png,dog\nmissing.png,cat\n"),
    ]
    report = import_uploads(project, files)
    assert sorted(report.imported) == ["a.png", "b.png"]
    named = {p.source: p.message for p in report.problems}
    assert "images/broken.png" in named
    assert "images/stray.png" in named and "not listed" in named["images/stray.png"]
    assert any("missing.png" in m for s, m in named.items() if s == "tags.csv")
    assert project.count_images() == 2
    assert {r.filename: r.tags for r in project.images()} == {"a.png": ("cat",), "b.png": ("cat", "dog")}


def test_images_without_a_csv_come_in_untagged(tmp_path: Path) -> None:
    project = Project.create(tmp_path / "p")
    report = import_uploads(project, [("x.png", _png(1)), ("y.png", _png(2)), ("x.png", _png(3))])
    assert sorted(report.imported) == ["x.png", "y.png"]
    assert [p.source for p in report.problems] == ["images/x.png"]  # uploaded twice
    assert project.count_images(untagged=True) == 2


def test_a_zip_imports_and_its_problems_name_the_uploaded_zip(tmp_path: Path) -> None:
    project = Project.create(tmp_path / "p")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("set/images/z.png", _png(50))
        archive.writestr("set/images/bad.png", b"garbage")
        archive.writestr("set/tags.csv", "filename,tags\nz.png,bird\nbad.png,bird\n")
    empty = io.BytesIO()
    with zipfile.ZipFile(empty, "w") as archive:
        archive.writestr("readme.txt", "nothing here")
    report = import_uploads(project, [("birds.zip", buffer.getvalue()), ("empty.zip", empty.getvalue())])
    assert report.imported == ["z.png"]
    sources = [p.source for p in report.problems]
    assert "birds.zip: images/bad.png" in sources
    assert any(s.startswith("empty.zip") for s in sources)
    assert not any("upload-" in s for s in sources)  # no temporary names shown to the user
    assert project.images()[0].tags == ("bird",)


def test_a_second_csv_and_a_csv_alone_are_reported(tmp_path: Path) -> None:
    project = Project.create(tmp_path / "p")
    report = import_uploads(project, [("one.csv", b"filename,tags\n"), ("two.csv", b"filename,tags\n")])
    assert report.imported == []
    assert [p.source for p in report.problems] == ["two.csv", "one.csv"]


def test_an_uploaded_coco_zip_keeps_its_splits_and_ids(tmp_path: Path) -> None:
    from tests.store.test_import_layouts import _coco_tree, _zip

    _coco_tree(tmp_path / "coco", tmp_path / "coco" / "val2017")
    data = _zip(tmp_path / "coco", tmp_path / "coco.zip").read_bytes()
    project = Project.create(tmp_path / "p")
    report = import_uploads(project, [("my-coco.zip", data), ("loose.png", _png(9))])
    assert len(report.imported) == 4 and not report.problems
    by_split = sorted((r.split, r.source_id) for r in project.images())
    assert by_split == [("train", None), ("val", 139), ("val", 285), ("val", 632)]
    again = Project.create(tmp_path / "q")
    import_uploads(again, [("my-coco.zip", data)], split="test")  # a split given: every image there
    assert {r.split for r in again.images()} == {"test"}
