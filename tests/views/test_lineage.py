"""A pseudo mask's lineage read back from the store and the peaks artifacts."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from wsseg.data.coco import encode_mask
from wsseg.stages.make_peaks import load_result
from wsseg.stages.make_proposals import load_proposals
from wsseg.store.project import Project
from wsseg.views.lineage import images_with_masks, mask_lineage
from wsseg.views.overlay import crm_to_pixels


def test_lineage_follows_the_mask_to_its_peak_crm_and_prm(trained: Path) -> None:
    project = Project(trained)
    first = project.images(limit=1)[0]
    assert images_with_masks(project) == [first.id]
    mask = project.pseudo_masks(first.id)[0]
    lin = mask_lineage(project, mask)
    peak = project.peaks(first.id)[0]
    assert lin.peak == (int(peak.y), int(peak.x))
    assert lin.class_name == peak.class_name and lin.tags == first.tags
    assert lin.mask.shape == (160, 160) and lin.mask[int(peak.y), int(peak.x)]
    assert lin.mask.sum() == np.count_nonzero(
        (np.mgrid[0:160, 0:160][0] - peak.y) ** 2 + (np.mgrid[0:160, 0:160][1] - peak.x) ** 2 <= 225
    )
    data = load_result(project.path(peak.prm_path))
    c = project.classes().index(peak.class_name)
    np.testing.assert_allclose(lin.crm, crm_to_pixels(data["crm"][c], 8, (160, 160)))
    np.testing.assert_allclose(lin.prm, data["prms"][0])  # the strongest peak is the first stored
    assert lin.info["strategy"] == "prm" and lin.info["score"] == 0.75
    assert lin.recorded == {"proposal_rank": 1}


def test_a_mask_without_a_peak_still_has_its_image_and_mask(trained: Path) -> None:
    project = Project(trained)
    first = project.images(limit=1)[0]
    mask = dict(project.pseudo_masks(first.id)[0], peak_id=None)
    lin = mask_lineage(project, mask)
    assert lin.crm is None and lin.prm is None and lin.peak is None
    assert lin.image.shape == (160, 160, 3) and lin.mask.any()


def test_lineage_shows_the_ranked_proposals_and_the_models_prediction(masked: Path, tmp_path: Path) -> None:
    root = tmp_path / "project"
    shutil.copytree(masked, root)
    project = Project(root)
    mask = next(m for m in project.pseudo_masks() if m["source"] == "auto")
    lin = mask_lineage(project, mask)
    recorded = mask["lineage"]
    stored = load_proposals(
        project.artifact("proposals", recorded["proposal"]["run"], mask["image_id"], ".json")
    )
    order = [r["proposal"] for r in recorded["ranked"]]
    assert lin.ranked is not None and len(lin.ranked) == len(order)
    np.testing.assert_array_equal(lin.ranked, stored.masks[order])  # best first, as recorded
    assert lin.prediction is None  # no model has been evaluated on the project

    # A model evaluation predicts two instances of the mask's class: the lineage shows the one that
    # overlaps the mask, not the higher-scoring one elsewhere.
    elsewhere = np.zeros_like(lin.mask)
    elsewhere[:12, :12] = True
    elsewhere &= ~lin.mask
    run_id = project.start_run("evaluate", {"model": "maskrcnn"})
    project.add_predictions(
        run_id,
        mask["image_id"],
        [
            {"class_name": mask["class_name"], "score": 0.9, "rle": encode_mask(elsewhere)},
            {"class_name": mask["class_name"], "score": 0.4, "rle": encode_mask(lin.mask)},
        ],
    )
    project.finish_run(run_id, "done", {})
    predicted, score = mask_lineage(project, mask).prediction
    assert score == pytest.approx(0.4)
    np.testing.assert_array_equal(predicted, lin.mask)


def test_lineage_of_a_peak_found_on_the_enlarged_image(trained: Path, tmp_path: Path) -> None:
    """A peaks run made with ``--scale 2`` holds its peaks, CRM and PRMs at twice the image's size;
    the lineage shows them on the image: the peak at half its stored pixel, the PRM at image size."""
    from wsseg.methods.prm import PRMConfig
    from wsseg.stages.make_peaks import make_peaks
    from wsseg.stages.make_pseudo_masks import resize_prms
    from wsseg.views.cam import image_maps, open_classifier

    root = tmp_path / "project"
    shutil.copytree(trained, root)
    project = Project(root)
    run = make_peaks(
        project, prm_config=PRMConfig(class_threshold=None, max_peaks=6), shard=(0, 2), scale=2.0
    )
    first = project.images(limit=1)[0]
    peak = project.peaks(first.id, run)[0]
    data = load_result(project.path(peak.prm_path))
    assert data["prms"].shape[1:] == (2 * first.height, 2 * first.width)
    yy, xx = np.mgrid[0 : first.height, 0 : first.width]
    disc = (yy - peak.y // 2) ** 2 + (xx - peak.x // 2) ** 2 <= 15**2
    mask_id = project.add_pseudo_mask(
        first.id, peak.class_name, encode_mask(disc), peak_id=peak.id, strategy="prm"
    )
    mask = next(m for m in project.pseudo_masks(first.id) if m["id"] == mask_id)

    lin = mask_lineage(project, mask)
    assert lin.peak == (int(peak.y) // 2, int(peak.x) // 2) and lin.mask[lin.peak]
    assert lin.prm.shape == lin.crm.shape == (first.height, first.width)
    np.testing.assert_allclose(lin.prm, resize_prms(data["prms"][:1], (first.height, first.width))[0])
    assert lin.prm.sum() == pytest.approx(1.0, rel=1e-3)

    # the CAM page shows that run on the image the classifier saw: twice the size, maps aligned
    maps = image_maps(project, first, open_classifier(project))
    assert maps.source == f"peaks run {run} (images enlarged 2x)"
    assert maps.image.shape[:2] == (2 * first.height, 2 * first.width)
    assert np.array_equal(maps.stored_peaks, data["peaks"].reshape(-1, 4))
    assert maps.crm.shape[1] * maps.stride == maps.image.shape[0]
