"""A pseudo mask's lineage read back from the store and the peaks artifacts."""

from pathlib import Path

import numpy as np

from wsseg.lineage import images_with_masks, mask_lineage
from wsseg.overlay import crm_to_pixels
from wsseg.stages.make_peaks import load_result
from wsseg.store import Project


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
