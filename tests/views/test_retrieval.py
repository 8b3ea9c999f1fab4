"""The Proposals page's core: rankings checked against wsseg.methods.pseudo_masks computed directly."""

from pathlib import Path

import numpy as np
import pytest

from wsseg.methods.proposals import Proposals
from wsseg.methods.pseudo_masks import (
    PeakInput,
    RetrievalConfig,
    background_map,
    contours,
    retrieve,
    score_terms,
)
from wsseg.store.project import Project
from wsseg.views.retrieval import (
    ImageCandidates,
    describe_proposal,
    load_candidates,
    newest_runs,
    rank_of,
    rank_proposals,
)


def _square(shape: tuple[int, int], top: int, left: int, side: int) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[top : top + side, left : left + side] = True
    return mask


@pytest.fixture()
def scene() -> ImageCandidates:
    """40x40: a blob PRM around (12, 12), a CRM bright there, and five nested/disjoint squares."""
    shape = (40, 40)
    yy, xx = np.mgrid[0:40, 0:40]
    prm = np.exp(-((yy - 12) ** 2 + (xx - 12) ** 2) / 18.0).astype(np.float32)
    prm /= prm.sum()
    crm = np.zeros((2, 10, 10), np.float32)
    crm[1, 1:5, 1:5] = 3.0
    masks = np.stack(
        [
            _square(shape, 0, 0, 40),  # the whole image (too large: skipped)
            _square(shape, 6, 6, 13),  # the blob
            _square(shape, 2, 2, 30),  # the blob and much background
            _square(shape, 10, 10, 5),  # the blob's centre
            _square(shape, 25, 25, 10),  # elsewhere
        ]
    )
    proposals = Proposals(
        masks=masks,
        objectness=np.array([5.0, 4.0, 3.0, 2.0, 1.0], np.float32),
        source=np.zeros(5, np.int16),
        level=np.zeros(5, np.int32),
        sources=("test",),
    )
    peak = PeakInput(class_index=1, y=34, x=34, value=2.0, prm=prm)
    image = np.zeros((*shape, 3), np.uint8)
    return ImageCandidates(image, crm, [peak], proposals, peaks_run=1, proposals_run=2)


def test_prm_ranking_terms_and_order_equal_the_direct_computation(scene: ImageCandidates) -> None:
    config = RetrievalConfig(alpha=0.8, beta=0.5, bg=0.95, contain_point=False)
    ranking = rank_proposals(scene, 0, config)
    masks, prm = scene.proposals.masks, scene.peaks[0].prm
    terms = score_terms(
        masks, contours(masks, 5), prm[None], background_map(scene.crm[1], (40, 40), 0.95)[None]
    )
    expected = 0.8 * terms["inside"][:, 0] + terms["contour"][:, 0] - 0.5 * terms["background"][:, 0]
    usable = [1, 2, 3, 4]  # the whole image is at least max_area
    order = sorted(usable, key=lambda j: -expected[j])
    assert [r["proposal"] for r in ranking.rows] == order
    assert [r["rank"] for r in ranking.rows] == [1, 2, 3, 4]
    for row in ranking.rows:
        j = row["proposal"]
        assert row["score"] == pytest.approx(expected[j], rel=1e-5)
        assert row["alpha x inside"] == pytest.approx(0.8 * terms["inside"][j, 0], rel=1e-5)
        assert row["-beta x background"] == pytest.approx(-0.5 * terms["background"][j, 0], rel=1e-5)
        parts = row["alpha x inside"] + row["contour"] + row["-beta x background"]
        assert parts == pytest.approx(row["score"], rel=1e-5)
        assert row["area"] == int(masks[j].sum())
    # the chosen mask is what the pseudo-mask stage retrieves for this peak
    assert np.array_equal(ranking.mask, retrieve(scene.proposals, scene.peaks, scene.crm, config)[0].mask)


def test_beta_reorders_the_ranking(scene: ImageCandidates) -> None:
    low = rank_proposals(scene, 0, RetrievalConfig(beta=0.0, contain_point=False))
    high = rank_proposals(scene, 0, RetrievalConfig(beta=1.0, contain_point=False))
    # without the background penalty the large square (mostly background) outranks the one elsewhere;
    # with it, the large square falls last, 580 background pixels against 100
    assert rank_of(low, 2) < rank_of(low, 4) and rank_of(high, 2) == 4 == len(high.rows)
    assert [r["proposal"] for r in low.rows] != [r["proposal"] for r in high.rows]


def test_wise_takes_the_most_objectness_proposal_holding_the_point(scene: ImageCandidates) -> None:
    argmax = rank_proposals(scene, 0, RetrievalConfig(strategy="wise", point="prm_argmax"))
    assert argmax.point == (12, 12)
    assert [r["proposal"] for r in argmax.rows] == [1, 2, 3]  # those holding (12, 12), by objectness
    assert [r["score"] for r in argmax.rows] == [4.0, 3.0, 2.0]
    at_peak = rank_proposals(scene, 0, RetrievalConfig(strategy="wise", point="peak"))
    assert at_peak.point == (34, 34)
    assert [r["proposal"] for r in at_peak.rows] == [4]  # the only usable square holding (34, 34)
    assert at_peak.mask[30, 30] and not at_peak.mask[12, 12]
    assert rank_of(at_peak, 1) is None


def test_no_usable_proposal_gives_an_empty_ranking(scene: ImageCandidates) -> None:
    ranking = rank_proposals(scene, 0, RetrievalConfig(strategy="prm", max_area=0.01, contain_point=False))
    assert ranking.rows == [] and ranking.mask is None and ranking.point is None


def test_candidates_are_read_from_the_newest_runs(proposed: Path) -> None:
    from wsseg.stages.make_peaks import load_result

    project = Project(proposed)
    peaks_run, proposals_run = newest_runs(project)
    record = project.images(limit=1)[0]
    found = load_candidates(project, record, peaks_run.id, proposals_run.id)
    stored = load_result(project.artifact("peaks", peaks_run.id, record.id, ".npz"))
    assert len(found.peaks) == len(stored["peaks"]) >= 1
    assert found.image.shape == (record.height, record.width, 3)
    assert found.proposals.masks.shape[1:] == (record.height, record.width)
    assert [(p.class_index, p.y, p.x) for p in found.peaks] == [
        (int(c), int(y), int(x)) for c, y, x, _ in stored["peaks"]
    ]
    assert all(p.prm.sum() == pytest.approx(1.0, rel=1e-3) for p in found.peaks)
    assert load_candidates(project, record, peaks_run.id, proposals_run.id + 100) is None


def test_a_ranked_proposal_is_described_in_words_with_its_shares(scene: ImageCandidates) -> None:
    ranking = rank_proposals(scene, 0, RetrievalConfig(strategy="prm", alpha=0.8, beta=1e-5, point="peak"))
    for row in ranking.rows:
        mask = scene.proposals.masks[row["proposal"]]
        prm = scene.peaks[0].prm
        background = background_map(scene.crm[1], (40, 40), RetrievalConfig().bg)
        inside = prm[mask].sum() / prm.sum()  # the share of the response, computed here from the masks
        on_background = background[mask].sum() / mask.sum()
        text = describe_proposal(row, image_area=40 * 40)
        assert text.startswith(f"covers {inside:.0%} of the peak's response (")
        assert f"; {on_background:.0%} of its area lies on background; " in text
        assert text.endswith(f"{mask.sum()} px ({mask.sum() / 1600:.1%} of the image)")
    # The raw example of the issue: 4030 background pixels in a 5000-pixel proposal.
    raw = {"inside": 0.62, "contour": 0.3, "background": 4030.0, "area": 5000, "objectness": 2.0}
    assert describe_proposal(raw) == (
        "covers 62% of the peak's response (30% on its outline); 81% of its area lies on background; 5000 px"
    )
    wise = rank_proposals(scene, 0, RetrievalConfig(strategy="wise", point="peak")).rows[0]
    assert (
        describe_proposal(wise)
        == f"holds the peak's point; objectness {wise['objectness']:.2f}; {wise['area']} px"
    )
    assert describe_proposal({"proposal": 3, "score": 0.5}) == "no score terms recorded"
    assert describe_proposal({"proposal": 3, "score": 0.5, "area": 64}) == "64 px"
