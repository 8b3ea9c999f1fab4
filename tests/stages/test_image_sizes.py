"""Images of any size: the import refuses those smaller than the pipeline can use, by name; a large
one is stored untouched and goes through every per-image stage (peaks, proposals, pseudo masks) at a
bounded working size, and what the stages store per pixel has the stored image's size; an image a stage
cannot handle is skipped by name and the run ends done.

The full 6000x6000 measurement (time and peak memory of the proposals stage) is
``tests/tools/measure_large_image.py``; here the large image is a 4000x3000 phone photo, with a cheap proposal config.
"""

from __future__ import annotations

import dataclasses
import hashlib

import cv2
import numpy as np
import pytest
import torch

from wsseg.data.coco import decode_rle
from wsseg.data.images import MIN_SIDE
from wsseg.methods.proposals import ProposalConfig
from wsseg.methods.pseudo_masks import RetrievalConfig
from wsseg.models.classifier import ClassifierConfig
from wsseg.models.peaks import PeakConfig, find_peaks
from wsseg.stages.make_peaks import load_result, make_peaks, working_shape
from wsseg.stages.make_proposals import load_proposals, make_proposals, proposal_masks, resize_mask
from wsseg.stages.make_pseudo_masks import make_pseudo_masks
from wsseg.stages.per_image import skipped_images
from wsseg.stages.recipes import INFERENCE_PEAKS, WORKING_SIDE
from wsseg.stages.train_classifier import train_classifier
from wsseg.store.importer import import_source
from wsseg.store.project import Project
from wsseg.training.datasets import TaggedImages
from wsseg.training.engine import TrainConfig

BIG = (3000, 4000)  # height, width: a 12-megapixel phone photo
DISC = (1100, 1500, 450)  # y, x, radius of the object drawn on it, in stored pixels
CHEAP = ProposalConfig(scales=(400.0,), colour_spaces=("rgb",), max_proposals=12)


def _photo(height: int, width: int, seed: int, disc: tuple[int, int, int] | None = None) -> np.ndarray:
    """A smooth RGB gradient (a large PNG of it stays small) with one filled disc."""
    rng = np.random.default_rng(seed)
    ys = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    xs = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    image = np.empty((height, width, 3), np.uint8)
    for c in range(3):
        a, b = rng.uniform(40, 110, 2)
        image[:, :, c] = (60 + a * ys + b * xs).astype(np.uint8)
    y, x, r = disc if disc is not None else (height // 2, width // 2, max(1, min(height, width) // 4))
    cv2.circle(image, (x, y), r, tuple(int(v) for v in rng.integers(180, 255, 3)), -1)
    return image


def _disc_mask() -> np.ndarray:
    mask = np.zeros(BIG, np.uint8)
    cv2.circle(mask, (DISC[1], DISC[0]), DISC[2], 1, -1)
    return mask.astype(bool)


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Project, object]:
    src = tmp_path_factory.mktemp("sizes") / "src"
    (src / "images").mkdir(parents=True)
    rows = []
    for k in range(3):
        cv2.imwrite(str(src / "images" / f"photo{k}.png"), _photo(96, 128, k)[:, :, ::-1])
        rows.append(f"photo{k}.png,ball")
    cv2.imwrite(
        str(src / "images" / "big.png"), _photo(*BIG, 7, DISC)[:, :, ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 1]
    )
    cv2.imwrite(str(src / "images" / "dot.png"), np.full((1, 1, 3), 200, np.uint8))
    cv2.imwrite(str(src / "images" / "thumb.png"), _photo(20, 20, 3)[:, :, ::-1])
    (src / "tags.csv").write_text(
        "filename,tags\n" + "\n".join(rows) + "\nbig.png,ball\ndot.png,ball\nthumb.png,ball\n"
    )
    project = Project.create(src.parent / "p")
    report = import_source(project, src)
    return project, report


def test_the_import_refuses_tiny_images_by_name_and_keeps_the_big_one_untouched(imported) -> None:
    project, report = imported
    assert sorted(report.imported) == ["big.png", "photo0.png", "photo1.png", "photo2.png"]
    refused = {p.source: p.message for p in report.problems}
    assert sorted(refused) == ["images/dot.png", "images/thumb.png"]
    assert refused["images/dot.png"] == (
        f"1x1 pixels is too small: the pipeline needs at least {MIN_SIDE}x{MIN_SIDE} "
        "(its class maps have one cell per 8 pixels)"
    )
    assert refused["images/thumb.png"].startswith("20x20 pixels is too small")
    big = next(r for r in project.images() if r.filename == "big.png")
    assert (big.height, big.width) == BIG
    stored = cv2.imread(str(project.image_path(big)))[:, :, ::-1]
    assert np.array_equal(stored, _photo(*BIG, 7, DISC))  # the original, not a downscaled copy


def test_a_large_image_goes_through_every_stage_and_its_masks_have_the_stored_size(imported) -> None:
    project, _ = imported
    # an image stored before the import had a minimum: the stages skip it by name, the runs end done
    dot = cv2.imencode(".png", np.full((1, 1, 3), 200, np.uint8))[1].tobytes()
    project.add_image("old-dot.png", dot, 1, 1, hashlib.sha256(dot).hexdigest(), ("ball",))
    arrays = np.stack([_photo(64, 64, k) for k in range(4)])
    data = TaggedImages(arrays, np.ones((4, 1), np.float32), ["ball"])
    model = ClassifierConfig(num_classes=1, backbone="small", small_width=8)
    train_classifier(project, model, TrainConfig(epochs=1, batch_size=4), dataset=data)
    big = next(r for r in project.images() if r.filename == "big.png")
    working = working_shape(*BIG, WORKING_SIDE)
    assert working == (768, 1024)

    every_peak = dataclasses.replace(
        INFERENCE_PEAKS.prm_config(), peak_threshold=None, relative_threshold=None, max_peaks=3
    )
    peaks_run = make_peaks(project, prm_config=every_peak)
    result = load_result(project.artifact("peaks", peaks_run, big.id, ".npz"))
    # every local maximum of the stored map, found again here with the same settings, capped at 3
    found = find_peaks(
        torch.from_numpy(result["crm"]), PeakConfig(), peak_threshold=None, smooth=every_peak.smooth, stride=8
    )
    assert len(found) > 0 and len(result["peaks"]) == min(3, len(found))
    assert result["prms"].shape == (len(result["peaks"]), *working)
    assert result["crm"].shape[1:] == (96, 128)  # the stride-8 map of the working image

    proposals_run = make_proposals(project, CHEAP)
    path = project.artifact("proposals", proposals_run, big.id, ".json")
    computed = load_proposals(
        path, WORKING_SIDE
    ).masks  # as the stage computed them (pseudo masks read these)
    masks = proposal_masks(path, range(len(computed)))
    assert computed.shape[1:] == working and masks.shape[1:] == BIG  # stored at the stored image's size
    for stored, small in zip(masks, computed, strict=True):  # the two copies agree
        back = resize_mask(stored, working)
        assert (back & small).sum() >= 0.97 * (back | small).sum()
    disc = _disc_mask()
    best = max((m & disc).sum() / (m | disc).sum() for m in masks)
    assert best > 0.9, f"no proposal recovers the drawn disc (best IoU {best:.2f})"
    run = project.latest_run("proposals")
    assert run.id == proposals_run and run.metrics["images"] == 5
    assert [s["image"] for s in skipped_images(run.metrics)] == ["old-dot.png"]
    assert (
        skipped_images(run.metrics)[0]["reason"]
        == "1x1 pixels is too small: selective search needs at least 2x2"
    )

    # every peak gets the best-scoring usable proposal (the untrained peaks need not lie in one)
    anywhere = RetrievalConfig(contain_point=False)
    pseudo_run = make_pseudo_masks(project, anywhere, peaks_run, proposals_run, tagged_only=False)
    rows = project.pseudo_masks(run_id=pseudo_run)
    on_big = [r for r in rows if r["image_id"] == big.id]
    assert on_big and all(decode_rle(r["rle"]).shape == BIG for r in on_big)
    for r in rows:
        record = project.image(r["image_id"])
        assert decode_rle(r["rle"]).shape == (record.height, record.width)
        y, x = r["lineage"]["point"]
        assert 0 <= y < record.height and 0 <= x < record.width
    run = project.latest_run("pseudo_masks")
    assert run.id == pseudo_run and run.status == "done"
    skipped = skipped_images(run.metrics)
    assert [s["image"] for s in skipped] == ["old-dot.png"]
    assert f"has no result in proposals run {proposals_run}" in skipped[0]["reason"]
