"""The proposals and pseudo-masks stages: artifacts, store rows, shards, workers, COCO export, CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy import ndimage

from wsseg.cli import main
from wsseg.data.coco import decode_rle, read_coco
from wsseg.errors import BadInputError
from wsseg.methods.overlap import best_overlaps
from wsseg.methods.prm import PRMResult
from wsseg.methods.pseudo_masks import RetrievalConfig
from wsseg.models.peaks import Peak
from wsseg.stages.make_peaks import save_result
from wsseg.stages.make_proposals import load_proposals, make_proposals
from wsseg.stages.make_pseudo_masks import export_coco, make_pseudo_masks
from wsseg.store.project import Project

SIZE = 64
CLASSES = ["disc", "square"]


def _image(seed: int) -> tuple[np.ndarray, list[tuple[int, int, int, np.ndarray]]]:
    """A textured 64x64 image with a disc and a square: the image and (class, y, x, mask) per object."""
    rng = np.random.default_rng(seed)
    texture = cv2.GaussianBlur(rng.normal(0, 1, (SIZE, SIZE)).astype(np.float32), (0, 0), 2.0)
    image = np.clip(120 + 60 * texture[:, :, None] * np.array([1.0, 0.6, 0.3]), 0, 255).astype(np.uint8)
    disc = np.zeros((SIZE, SIZE), np.uint8)
    cy, cx = 18 + seed % 5, 20 + seed % 7
    cv2.circle(disc, (cx, cy), 11, 1, -1)
    square = np.zeros((SIZE, SIZE), np.uint8)
    square[38:56, 34 + seed % 6 : 52 + seed % 6] = 1
    image[disc > 0] = (230, 40, 40)
    image[square > 0] = (40, 60, 220)
    sy, sx = 46, 42 + seed % 6
    return image, [(0, cy, cx, disc.astype(bool)), (1, sy, sx, square.astype(bool))]


def _prm(mask: np.ndarray, cy: int, cx: int) -> np.ndarray:
    """A PRM like excitation backprop's: mass over the object, most at its centre and along its edges."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    prm = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 50.0) * mask
    prm += 0.5 * (mask & ~ndimage.binary_erosion(mask, iterations=2))
    return (prm / prm.sum()).astype(np.float32)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project of 5 tagged images with a peaks run written in the peaks stage's own format."""
    root = tmp_path_factory.mktemp("pseudo") / "p"
    project = Project.create(root)
    project.add_classes(CLASSES)
    run_id = project.start_run("peaks", {"synthetic": True})
    for seed in range(5):
        image, objects = _image(seed)
        data = cv2.imencode(".png", image[:, :, ::-1])[1].tobytes()
        tags = ["disc", "square"] if seed != 4 else ["disc"]  # image 4: the square's peak is untagged
        record = project.add_image(f"im{seed}.png", data, SIZE, SIZE, hashlib.sha256(data).hexdigest(), tags)
        crm = np.stack([cv2.resize((o[3] * 4.0 - 1).astype(np.float32), (8, 8)) for o in objects])
        peaks = [Peak(c, y, x, 3.0 - c, y // 4, x // 4) for c, y, x, _ in objects]
        maps = np.stack([_prm(m, y, x) for _, y, x, m in objects])
        path = project.artifact("peaks", run_id, record.id, ".npz")
        save_result(path, PRMResult(tuple(peaks), maps, np.array([1.0, 1.0], np.float32), crm))
        project.add_peaks(
            run_id,
            record.id,
            [
                {
                    "class_name": CLASSES[p.class_index],
                    "y": p.y,
                    "x": p.x,
                    "value": p.value,
                    "prm_path": str(path.relative_to(root)),
                }
                for p in peaks
            ],
        )
    project.finish_run(run_id, "done")
    make_proposals(project)
    return root


def _content(project: Project, run_id: int) -> list[tuple]:
    rows = project.pseudo_masks(run_id=run_id)
    return sorted(
        (
            m["image_id"],
            m["class_name"],
            m["rle"]["counts"],
            m["score"],
            m["peak_id"],
            m["strategy"],
            json.dumps(m["lineage"], sort_keys=True),
        )
        for m in rows
    )


def test_proposals_are_stored_and_recover_each_object(synthetic: Path) -> None:
    project = Project(synthetic)
    run = project.latest_run("proposals")
    assert run.metrics["images"] == 5 and run.metrics["seconds_per_image"] > 0
    for record in project.images():
        proposals = load_proposals(project.artifact("proposals", run.id, record.id, ".json"))
        assert proposals.masks.shape[1:] == (SIZE, SIZE) and len(proposals) <= 200
        _, objects = _image(int(record.filename[2]))
        assert best_overlaps(proposals.masks, np.stack([o[3] for o in objects])).min() > 0.9


def test_pseudo_masks_find_the_objects_and_keep_their_lineage(synthetic: Path) -> None:
    project = Project(synthetic)
    run_id = make_pseudo_masks(project)
    peaks_run = project.latest_run("peaks").id
    for record in project.images():
        _, objects = _image(int(record.filename[2]))
        masks = project.pseudo_masks(record.id, run_id)
        assert sorted(m["class_name"] for m in masks) == sorted(record.tags)  # untagged peaks unused
        for m in masks:
            truth = objects[CLASSES.index(m["class_name"])][3]
            mask = decode_rle(m["rle"])
            assert (mask & truth).sum() / (mask | truth).sum() > 0.8
            lineage = m["lineage"]
            assert lineage["strategy"] == "prm" and lineage["runs"]["peaks"] == peaks_run
            assert lineage["peak"]["id"] == m["peak_id"]
            # the on-disk layout existing projects rely on, written out by hand
            assert lineage["prm"]["path"] == f"artifacts/peaks/run-{peaks_run}/{record.id}.npz"
            assert {"score", "inside", "contour", "background", "objectness"} <= set(lineage["ranked"][0])
            assert lineage["ranked"][0]["score"] == pytest.approx(m["score"])
            assert lineage["config"]["beta"] == RetrievalConfig().beta


def test_two_shards_store_what_one_run_stores(synthetic: Path) -> None:
    project = Project(synthetic)
    single = make_pseudo_masks(project, workers=2)
    sharded = make_pseudo_masks(project, shard=(0, 2), workers=1)
    make_pseudo_masks(project, shard=(1, 2), run_id=sharded, workers=1)
    assert _content(project, single) == _content(project, sharded)
    assert len(_content(project, single)) == 9
    # re-running a shard into its run replaces its masks rather than adding copies
    make_pseudo_masks(project, shard=(1, 2), run_id=sharded)
    assert _content(project, single) == _content(project, sharded)


def test_export_is_a_readable_coco_file(synthetic: Path, tmp_path: Path) -> None:
    project = Project(synthetic)
    run_id = make_pseudo_masks(project)
    doc = export_coco(project, run_id, tmp_path / "pseudo.json")
    coco = read_coco(tmp_path / "pseudo.json")
    assert not coco.problems and len(doc["annotations"]) == 9 and len(coco.images) == 5
    assert sorted(coco.categories.values()) == CLASSES


def test_bad_input_is_reported(synthetic: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pseudo-masks", "--project", str(synthetic), "--shard", "2/2"]) == 2
    assert "--shard" in capsys.readouterr().err
    assert main(["proposals", "--project", str(synthetic), "--shard", "one/2"]) == 2
    assert "--shard" in capsys.readouterr().err
    with pytest.raises(BadInputError, match="not a peaks run"):
        make_pseudo_masks(Project(synthetic), peaks_run=999)
    empty = Project.create(tmp_path / "empty")
    with pytest.raises(BadInputError, match="wsseg peaks"):
        make_pseudo_masks(empty)


def test_cli_round_trip_on_a_trained_demo(tmp_path: Path) -> None:
    """demo -> train-classifier -> peaks -> proposals -> pseudo-masks --export, all through the CLI."""
    from wsseg.demo.project import create_demo_project

    root = tmp_path / "demo"
    create_demo_project(root, n_images=6, seed=1)
    args = ["--project", str(root)]
    assert main(["train-classifier", *args, "--epochs", "1", "--batch-size", "6"]) == 0
    assert main(["peaks", *args, "--relative-threshold", "0.5"]) == 0
    assert main(["proposals", *args, "--workers", "1", "--max-proposals", "50"]) == 0
    out = tmp_path / "pseudo.json"
    assert main(["pseudo-masks", *args, "--workers", "1", "--strategy", "wise", "--export", str(out)]) == 0
    project = Project(root)
    run = project.latest_run("pseudo_masks")
    assert run.config["retrieval"]["strategy"] == "wise"
    stored = project.pseudo_masks(run_id=run.id)
    assert run.metrics["masks"] == len(stored) == len(json.loads(out.read_text())["annotations"])
    peak_ids = {p.id for r in project.images() for p in project.peaks(r.id)}
    assert all(m["peak_id"] in peak_ids for m in stored)


def test_resize_prms_keeps_each_map_a_distribution() -> None:
    from wsseg.stages.make_pseudo_masks import resize_prms

    maps = np.random.default_rng(0).random((3, 8, 10)).astype(np.float32)
    maps /= maps.sum(axis=(1, 2), keepdims=True)
    out = resize_prms(maps, (16, 20))
    assert out.shape == (3, 16, 20) and (out >= 0).all()
    np.testing.assert_allclose(out.sum(axis=(1, 2)), 1.0, rtol=1e-5)
    # an image without peaks (no maps) at another size gives no maps, not an error
    assert resize_prms(np.zeros((0, 8, 10), np.float32), (16, 20)).shape == (0, 16, 20)
