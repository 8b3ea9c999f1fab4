"""Tests for wsseg.methods.pseudo_masks: the PRM retrieval score, the WISE rule and the merging mask NMS."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
from scipy import ndimage

from wsseg.errors import BadInputError
from wsseg.methods.proposals import Proposals
from wsseg.methods.pseudo_masks import (
    PeakInput,
    PseudoMask,
    RetrievalConfig,
    background_map,
    contours,
    mask_nms,
    retrieve,
    score_terms,
)

H = W = 64


def _disc(cy: int, cx: int, r: int) -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)
    cv2.circle(mask, (cx, cy), r, 1, -1)
    return mask.astype(bool)


def _prm_on(mask: np.ndarray, cy: int, cx: int) -> np.ndarray:
    """A PRM as the excitation backprop gives one: mass over the object, most at its centre and edges."""
    yy, xx = np.mgrid[:H, :W]
    prm = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 6.0**2)) * mask
    prm += 0.5 * (mask & ~ndimage.binary_erosion(mask, iterations=2))
    return (prm / prm.sum()).astype(np.float32)


def _proposals(masks: list[np.ndarray], objectness: list[float]) -> Proposals:
    k = len(masks)
    return Proposals(
        np.stack(masks),
        np.asarray(objectness, np.float32),
        np.zeros(k, np.int16),
        np.zeros(k, np.int32),
        ("test",),
    )


def _two_neighbours() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Object A (the peak's), its touching neighbour B of the same class, and a CRM that is high on both."""
    a, b = _disc(32, 20, 10), _disc(32, 41, 10)
    crm = cv2.GaussianBlur((a | b).astype(np.float32), (0, 0), 2.0)[::8, ::8] * 5 - 1  # stride-8 class map
    return a, b, crm[None], _prm_on(a, 32, 20)


def test_score_terms_match_a_direct_computation() -> None:
    a, b, crm, prm = _two_neighbours()
    masks = np.stack([a, a | b, _disc(32, 20, 4)])
    edge = contours(masks, 5)
    q = background_map(crm[0], (H, W), 0.95)
    terms = score_terms(masks, edge, prm[None], q[None])
    for k, mask in enumerate(masks):
        gradient = ndimage.binary_dilation(mask, np.ones((5, 5))) & ~ndimage.binary_erosion(
            mask, np.ones((5, 5)), border_value=1
        )
        assert np.array_equal(edge[k], gradient)
        assert terms["inside"][k, 0] == pytest.approx(prm[mask].sum(), rel=1e-5)
        assert terms["contour"][k, 0] == pytest.approx(prm[gradient].sum(), rel=1e-5)
        assert terms["background"][k, 0] == pytest.approx(q[mask].sum())
    up = cv2.resize(crm[0], (W, H), interpolation=cv2.INTER_CUBIC)
    assert np.array_equal(q.astype(bool), up < 0.95 * up.mean())


@pytest.mark.parametrize("beta", [1e-5, 1e-2])
def test_prm_score_prefers_the_peaks_object(beta: float) -> None:
    a, b, crm, prm = _two_neighbours()
    # best objectness first: the region that swallows the neighbour, then a too-small one, then A
    proposals = _proposals([a | b, _disc(32, 20, 4), a], [0.9, 0.8, 0.5])
    peak = PeakInput(0, 32, 20, 3.0, prm)
    found = retrieve(proposals, [peak], crm, RetrievalConfig(beta=beta))
    assert len(found) == 1 and found[0].proposal == 2
    ranked = found[0].ranked
    assert [r["proposal"] for r in ranked][0] == 2 and len(ranked) == 3
    top = ranked[0]
    assert top["score"] == pytest.approx(0.8 * top["inside"] + top["contour"] - beta * top["background"])
    assert np.array_equal(found[0].mask, a)


def test_wise_takes_the_most_object_like_proposal_at_the_prm_argmax() -> None:
    a, b, crm, prm = _two_neighbours()
    proposals = _proposals([b, a | b, a], [0.9, 0.6, 0.4])  # B does not contain the point
    found = retrieve(proposals, [PeakInput(0, 32, 20, 3.0, prm)], crm, RetrievalConfig(strategy="wise"))
    assert found[0].point == tuple(int(v) for v in np.unravel_index(prm.argmax(), prm.shape))
    assert found[0].proposal == 1 and found[0].score == pytest.approx(0.6)


def test_size_limits_skip_proposals() -> None:
    a, b, crm, prm = _two_neighbours()
    whole = np.ones((H, W), bool)
    proposals = _proposals([whole, a], [1.0, 0.1])
    found = retrieve(proposals, [PeakInput(0, 32, 20, 3.0, prm)], crm, RetrievalConfig(strategy="wise"))
    assert found[0].proposal == 1  # the whole image is above 85% of it
    nothing = retrieve(_proposals([whole], [1.0]), [PeakInput(0, 32, 20, 3.0, prm)], crm, RetrievalConfig())
    assert nothing == []


def _instance(mask: np.ndarray, score: float, peak: int, value: float) -> PseudoMask:
    prm = np.zeros((H, W), np.float32)
    prm[peak, peak] = value
    return PseudoMask(0, mask, score, peak, 0, prm, (), (0, 0), ())


def test_nms_merges_the_prms_of_suppressed_instances() -> None:
    a = _disc(32, 20, 10)
    shifted = _disc(32, 22, 10)  # IoU with A about 0.8
    far = _disc(10, 50, 6)
    kept = mask_nms(
        [_instance(shifted, 0.5, 1, 2.0), _instance(a, 0.9, 0, 1.0), _instance(far, 0.7, 2, 4.0)], 0.3
    )
    assert [k.peak for k in kept] == [0, 2]
    assert kept[0].merged == (1,) and kept[1].merged == ()
    expected = np.zeros((H, W), np.float32)
    expected[0, 0], expected[1, 1] = 1.0, 2.0
    assert np.array_equal(kept[0].prm, expected)
    unmerged = mask_nms([_instance(shifted, 0.5, 1, 2.0), _instance(a, 0.9, 0, 1.0)], 0.3, merge_prms=False)
    assert len(unmerged) == 1 and unmerged[0].prm.sum() == 1.0 and unmerged[0].merged == ()


def test_retrieve_runs_the_nms_and_keeps_distinct_objects() -> None:
    a, b, crm, prm_a = _two_neighbours()
    prm_b = _prm_on(b, 32, 41)
    proposals = _proposals([a, b, a | b], [0.5, 0.5, 0.9])
    peaks = [
        PeakInput(0, 32, 20, 3.0, prm_a),
        PeakInput(0, 32, 21, 2.0, prm_a),
        PeakInput(0, 32, 41, 2.5, prm_b),
    ]
    found = retrieve(proposals, peaks, crm, RetrievalConfig(beta=1e-2))
    assert sorted(f.proposal for f in found) == [0, 1]
    merged = next(f for f in found if f.proposal == 0)
    assert set(merged.merged) <= {0, 1} and len(merged.merged) == 1
    np.testing.assert_allclose(merged.prm, 2 * prm_a, rtol=1e-6)


def test_bad_config_and_inputs() -> None:
    with pytest.raises(BadInputError, match="strategy"):
        RetrievalConfig(strategy="best")
    with pytest.raises(BadInputError, match="min_area"):
        RetrievalConfig(min_area=0.9, max_area=0.5)
    with pytest.raises(BadInputError, match="unknown keys"):
        RetrievalConfig.from_dict({"gamma": 1})
    a, _, crm, _ = _two_neighbours()
    with pytest.raises(BadInputError, match="prm"):
        retrieve(_proposals([a], [1.0]), [PeakInput(0, 1, 1, 1.0, np.ones((8, 8), np.float32))], crm)
    assert RetrievalConfig.from_dict(RetrievalConfig(beta=0.5).to_dict()) == RetrievalConfig(beta=0.5)


def test_point_choice_and_containment() -> None:
    """The WISE point is the PRM argmax or the peak; with contain_point PRM retrieval keeps to
    proposals holding the point even when a bigger one scores higher."""
    h = w = 40
    left = np.zeros((h, w), bool)
    left[5:20, 5:20] = True
    right = np.zeros((h, w), bool)
    right[5:20, 22:37] = True
    both = left | right
    proposals = Proposals(
        np.stack([both, left, right]),
        np.array([0.9, 0.5, 0.4]),
        np.zeros(3, np.int16),
        np.zeros(3, np.int32),
        ("hand-made",),
    )
    prm = np.zeros((h, w), np.float32)
    prm[12, 30] = 1.0  # the PRM points into the right square while the peak sits in the left one
    peak = PeakInput(0, 12, 12, 1.0, prm)
    crm = np.zeros((1, 5, 5), np.float32)
    wise = RetrievalConfig(strategy="wise", nms_iou=None, point="prm_argmax")
    assert retrieve(proposals, [peak], crm, wise)[0].point == (12, 30)
    at_peak = retrieve(proposals, [peak], crm, dataclasses.replace(wise, point="peak"))[0]
    assert at_peak.point == (12, 12) and at_peak.proposal == 0  # highest objectness holding (12, 12)
    loose = RetrievalConfig(nms_iou=None, point="peak", contain_point=False)
    assert retrieve(proposals, [peak], crm, loose)[0].proposal in (0, 2)  # both hold the PRM's mass
    strict = dataclasses.replace(loose, contain_point=True)
    assert retrieve(proposals, [peak], crm, strict)[0].proposal in (0, 1)
    assert all(r["proposal"] != 2 for r in retrieve(proposals, [peak], crm, strict)[0].ranked)
