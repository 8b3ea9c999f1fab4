"""``wsseg export``: COCO keeps the source's ids, file names and category ids; VOC is a complete folder
that imports back with the same images, tags, splits and masks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.store.test_import_layouts import _coco_tree, _disc
from wsseg.cli import main
from wsseg.curation import queue as curation
from wsseg.curation.export import export
from wsseg.data.coco import decode_rle, encode_mask
from wsseg.errors import BadInputError
from wsseg.store.importer import import_source
from wsseg.store.instances import truth_instances
from wsseg.store.project import Project


def _pseudo_run(project: Project) -> dict[int, list[tuple[str, np.ndarray]]]:
    """A finished pseudo-masks run: on each image a disc of its first tag (and a rejected square);
    returns image id -> the (class, mask) pairs that are not rejected."""
    run_id = project.start_run("pseudo_masks", {})
    kept: dict[int, list[tuple[str, np.ndarray]]] = {}
    rejected: list[int] = []
    for k, record in enumerate(project.images()):
        disc = _disc(14 + k, 20 + 2 * k, 6, (record.height, record.width))
        square = np.zeros((record.height, record.width), bool)
        square[30:40, 40:50] = True
        ids = project.add_pseudo_masks(
            run_id,
            record.id,
            [
                {"class_name": record.tags[0], "rle": encode_mask(disc)},
                {"class_name": record.tags[0], "rle": encode_mask(square)},
            ],
        )
        kept[record.id] = [(record.tags[0], disc)]
        rejected.append(ids[1])
    project.finish_run(run_id, "done", {})
    for mask_id in rejected:
        curation.reject(project, mask_id, 1)
    return kept


def test_coco_export_gives_back_the_sources_ids_and_imports_again(tmp_path: Path) -> None:
    json_path = _coco_tree(tmp_path / "coco", tmp_path / "coco" / "val2017")
    project = Project.create(tmp_path / "p")
    import_source(project, json_path)
    kept = _pseudo_run(project)
    out = tmp_path / "pseudo.json"
    assert main(["export", "--project", str(project.root), "--what", "pseudo", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    original = json.loads(json_path.read_text())
    assert [(i["id"], i["file_name"]) for i in doc["images"]] == [
        (i["id"], i["file_name"]) for i in original["images"]
    ]
    assert {c["name"]: c["id"] for c in doc["categories"]} == {"person": 1, "dog": 18}
    by_source = {r.source_id: r.id for r in project.images()}
    got = sorted(
        (a["image_id"], a["category_id"], int(decode_rle(a["segmentation"]).sum()))
        for a in doc["annotations"]
    )
    ids = {"person": 1, "dog": 18}
    want = sorted(
        (src, ids[name], int(mask.sum())) for src, pid in by_source.items() for name, mask in kept[pid]
    )
    assert got == want

    again = Project.create(tmp_path / "again")
    report = import_source(again, out, images=tmp_path / "coco" / "val2017")
    assert len(report.imported) == 3
    assert [(r.source_id, r.filename) for r in again.images()] == [
        (r.source_id, r.filename) for r in project.images()
    ]
    truth, classes = truth_instances(again, None)
    for record in again.images():
        masks = truth[record.id].masks
        expected = kept[by_source[record.source_id]]
        assert len(masks) == len(expected)
        assert all((m == e).all() for m, (_, e) in zip(masks, expected, strict=True))


def test_voc_export_is_complete_and_imports_back(tmp_path: Path) -> None:
    json_path = _coco_tree(tmp_path / "coco", tmp_path / "coco" / "val2017")
    project = Project.create(tmp_path / "p")
    import_source(project, json_path, split="train")
    with project.transaction() as conn:  # one image in another split, to see splits travel
        conn.execute("UPDATE images SET split = 'val' WHERE id = ?", (project.images()[2].id,))
    kept = _pseudo_run(project)
    folder = tmp_path / "voc"
    assert main(["export", "--project", str(project.root), "--what", "pseudo", "--format", "voc",
                 "--out", str(folder)]) == 0  # fmt: skip
    for part in ("JPEGImages", "Annotations", "SegmentationClass", "SegmentationObject", "labelmap.txt"):
        assert (folder / part).exists(), part
    assert sorted(p.name for p in (folder / "ImageSets" / "Segmentation").iterdir()) == [
        "train.txt",
        "val.txt",
    ]

    again = Project.create(tmp_path / "again")
    report = import_source(again, folder)
    assert len(report.imported) == 3 and not report.problems
    assert again.classes()[: len(project.classes())] == project.classes()
    before = {r.sha256: r for r in project.images()}
    after = {r.sha256: r for r in again.images()}
    assert before.keys() == after.keys()  # the same image files
    assert {h: (r.tags, r.split) for h, r in after.items()} == {
        h: (r.tags, r.split) for h, r in before.items()
    }
    truth, classes = truth_instances(again, None)
    for digest, record in after.items():
        expected = kept[before[digest].id]
        got = truth[record.id]
        assert [classes[int(c)] for c in got.labels] == [name for name, _ in expected]
        assert all((m == e).all() for m, (_, e) in zip(got.masks, expected, strict=True))


def test_export_names_what_is_missing(tmp_path: Path) -> None:
    json_path = _coco_tree(tmp_path / "coco", tmp_path / "coco" / "val2017")
    project = Project.create(tmp_path / "p")
    import_source(project, json_path)
    with pytest.raises(BadInputError, match="evaluate stage; the project has none"):
        export(project, "predictions", "coco", tmp_path / "x.json")
    with pytest.raises(BadInputError, match="expected one of pseudo, curated"):
        export(project, "masks", "coco", tmp_path / "x.json")
