"""Tests for wsseg.methods.proposals (selective search), wsseg.methods.map_proposals (class-aware proposals), ABO and
the RLE storage of mask stacks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from wsseg.data.coco import decode_masks, encode_masks
from wsseg.data.shapes import ShapesConfig, generate
from wsseg.errors import BadInputError
from wsseg.methods.map_proposals import class_aware_proposals
from wsseg.methods.overlap import average_best_overlap, best_overlaps, mask_iou
from wsseg.methods.proposals import ProposalConfig, Proposals, selective_search


def _flat_shapes_image() -> tuple[np.ndarray, np.ndarray]:
    """A 96x96 grey image with a red disc, a blue square and a green triangle; and their 3xHxW masks."""
    image = np.full((96, 96, 3), 128, np.uint8)
    masks = np.zeros((3, 96, 96), np.uint8)
    cv2.circle(masks[0], (25, 25), 14, 1, -1)
    cv2.rectangle(masks[1], (55, 15), (82, 42), 1, -1)
    cv2.fillPoly(masks[2], [np.array([[20, 85], [45, 50], [70, 85]], np.int32)], 1)
    for mask, colour in zip(masks, [(220, 30, 30), (30, 40, 200), (40, 190, 60)], strict=True):
        image[mask > 0] = colour
    return image, masks.astype(bool)


@pytest.fixture(scope="module")
def shapes_run() -> list[tuple[object, Proposals]]:
    """Ten default shapes images with their proposals (computed once for the module)."""
    samples = [generate(ShapesConfig(), i) for i in range(10)]
    return [(s, selective_search(s.image)) for s in samples]


def test_recovers_flat_shapes():
    image, masks = _flat_shapes_image()
    proposals = selective_search(image)
    best = best_overlaps(proposals.masks, masks)
    assert best.min() >= 0.9, best


def test_recovers_flat_shapes_under_noise():
    image, masks = _flat_shapes_image()
    noise = np.random.default_rng(0).normal(0, 6, image.shape)
    noisy = np.clip(image + noise, 0, 255).astype(np.uint8)
    assert best_overlaps(selective_search(noisy).masks, masks).min() >= 0.9


def test_container_contract(shapes_run):
    sample, proposals = shapes_run[0]
    k = len(proposals)
    assert 0 < k <= ProposalConfig().max_proposals
    assert proposals.masks.shape == (k, *sample.image.shape[:2]) and proposals.masks.dtype == bool
    assert proposals.objectness.shape == (k,) and proposals.objectness.dtype == np.float32
    assert np.all(np.diff(proposals.objectness) <= 0)
    assert proposals.source.dtype == np.int16 and proposals.level.dtype == np.int32
    assert proposals.source.min() >= 0 and proposals.source.max() < len(proposals.sources)
    assert proposals.masks.reshape(k, -1).any(axis=1).all()


def test_shapes_abo_and_recall(shapes_run):
    best = np.concatenate([best_overlaps(p.masks, s.masks) for s, p in shapes_run])
    assert len(best) > 10
    assert best.mean() >= 0.75 and (best >= 0.5).mean() >= 0.85, (best.mean(), (best >= 0.5).mean())
    assert all(len(p) <= 200 for _, p in shapes_run)


def test_objectness_ranks_objects_first(shapes_run):
    """The 25 best-scored proposals cover the objects far better than the 25 worst kept ones."""
    top = np.concatenate([best_overlaps(p.masks[:25], s.masks) for s, p in shapes_run])
    bottom = np.concatenate([best_overlaps(p.masks[-25:], s.masks) for s, p in shapes_run])
    assert top.mean() >= bottom.mean() + 0.3, (top.mean(), bottom.mean())


def test_no_near_duplicates(shapes_run):
    for _, proposals in shapes_run[:3]:
        iou = mask_iou(proposals.masks, proposals.masks)
        np.fill_diagonal(iou, 0)
        assert iou.max() <= ProposalConfig().dedup_iou
    sample = shapes_run[0][0]
    strict = selective_search(sample.image, ProposalConfig(dedup_iou=0.5))
    iou = mask_iou(strict.masks, strict.masks)
    np.fill_diagonal(iou, 0)
    assert iou.max() <= 0.5


def test_deterministic(shapes_run):
    sample, first = shapes_run[1]
    second = selective_search(sample.image.copy())
    for name in ("masks", "objectness", "source", "level"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    assert first.sources == second.sources
    config = ProposalConfig(score="hierarchy", seed=3)
    a, b = selective_search(sample.image, config), selective_search(sample.image, config)
    np.testing.assert_array_equal(a.masks, b.masks)


def test_area_limits_and_max_proposals():
    image, _ = _flat_shapes_image()
    config = ProposalConfig(min_area=0.05, max_area=0.5, max_proposals=5)
    proposals = selective_search(image, config)
    area = proposals.masks.reshape(len(proposals), -1).mean(axis=1)
    assert len(proposals) <= 5 and area.min() >= 0.05 and area.max() <= 0.5


def test_bad_input_is_reported():
    with pytest.raises(BadInputError, match="uint8"):
        selective_search(np.zeros((32, 32, 3), np.float32))
    with pytest.raises(BadInputError, match="colour_spaces"):
        ProposalConfig(colour_spaces=("xyz",))
    with pytest.raises(BadInputError, match="levels"):
        class_aware_proposals(np.ones((8, 8)), levels=(0.0, 0.5))


def test_config_round_trip():
    config = ProposalConfig(scales=(30.0, 90.0), colour_spaces=("lab",))
    assert ProposalConfig.from_dict(config.to_dict()) == config
    with pytest.raises(BadInputError):
        ProposalConfig.from_dict({"bogus": 1})


def test_class_aware_two_bumps():
    yy, xx = np.mgrid[:64, :64]
    bump = np.exp(-((yy - 20) ** 2 + (xx - 16) ** 2) / 40.0) + 0.7 * np.exp(
        -((yy - 44) ** 2 + (xx - 48) ** 2) / 40.0
    )
    maps = np.stack([bump, np.zeros_like(bump)]).astype(np.float32)
    proposals = class_aware_proposals(maps)
    holds_first = proposals.masks[:, 20, 16] & ~proposals.masks[:, 44, 48]
    holds_second = proposals.masks[:, 44, 48] & ~proposals.masks[:, 20, 16]
    assert holds_first.any() and holds_second.any()
    assert all(name.startswith("class 0") for name in np.asarray(proposals.sources)[proposals.source])
    at_half = class_aware_proposals(bump, levels=(0.5,))
    assert len(at_half) == 2 and at_half.masks.sum(axis=(1, 2)).min() > 10
    assert len(class_aware_proposals(np.zeros((2, 8, 8)))) == 0


def test_average_best_overlap_by_hand():
    gt = np.zeros((2, 4, 4), bool)
    gt[0, :2, :2] = True  # 4 pixels
    gt[1, 2:, :] = True  # 8 pixels
    proposals = np.zeros((2, 4, 4), bool)
    proposals[0, :2, :3] = True  # with gt 0: 4 / 6
    proposals[1, 3:, :] = True  # with gt 1: 4 / 8
    abo, recall = average_best_overlap(proposals, gt)
    assert abo == pytest.approx((4 / 6 + 4 / 8) / 2)
    assert recall == pytest.approx(1.0)
    assert average_best_overlap(proposals[:1], gt) == pytest.approx(((4 / 6 + 0.0) / 2, 0.5))
    assert np.isnan(average_best_overlap(proposals, gt[:0])[0])


def test_rle_round_trip(shapes_run):
    _, proposals = shapes_run[2]
    rles = encode_masks(proposals.masks)
    assert len(rles) == len(proposals) and all(isinstance(r["counts"], str) for r in rles)
    np.testing.assert_array_equal(decode_masks(rles), proposals.masks)
    assert decode_masks([], shape=(5, 7)).shape == (0, 5, 7)
    assert encode_masks(np.zeros((0, 5, 7), bool)) == []


def test_blank_image_gives_only_the_whole_image():
    blank = np.full((40, 50, 3), 90, np.uint8)
    assert selective_search(blank).masks.shape == (0, 40, 50)
    whole = selective_search(blank, ProposalConfig(max_area=1.0))
    assert len(whole) == 1 and whole.masks.all()
