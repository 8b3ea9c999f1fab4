"""The pixel-label estimator's pieces: q_aux, the neighbourhood loss, mIoU, self-training labels, and a
tiny training run."""

import math

import numpy as np
import pytest
import torch

from wsseg.methods.crf import CRFConfig
from wsseg.methods.ple import (
    IGNORE,
    PLEConfig,
    confusion,
    miou,
    neighbourhood_loss,
    pixel_label_estimate,
    present_labels,
)
from wsseg.models.normalise import to_tensor
from wsseg.models.segmenter import Segmenter, SegmenterConfig
from wsseg.stages.evaluate_ple import self_training_labels
from wsseg.stages.train_ple import SegmentationImages, make_loss
from wsseg.training.engine import TrainConfig, train


def _random_probs(b: int, k: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(3 * torch.randn(b, k, h, w, generator=g), dim=1)


def test_q_aux_zero_for_absent_labels_sums_to_one_and_gives_each_present_label_its_share() -> None:
    probs = _random_probs(3, 5, 12, 10)
    tags = torch.tensor([[1, 0, 0, 1], [0, 0, 0, 0], [1, 1, 1, 1]], dtype=torch.float32)
    present = present_labels(tags, background=True)
    shares = torch.tensor([0.25, 0.0625, 0.0625, 0.0625, 0.0625])  # exact in float32
    q = pixel_label_estimate(probs, present, shares)
    assert q.shape == probs.shape
    torch.testing.assert_close(q.sum(1), torch.ones(3, 12, 10))
    assert torch.all(q[~present] == 0)
    winners = q.argmax(1)
    for n in range(3):
        for label in torch.nonzero(present[n]).flatten().tolist():
            wanted = math.ceil(shares[label].item() * 120)
            assert int((winners[n] == label).sum()) >= wanted, (n, label)


def test_q_aux_renormalises_p_over_the_present_labels_away_from_forced_pixels() -> None:
    probs = _random_probs(1, 3, 6, 6, seed=1)
    present = torch.tensor([[True, False, True]])
    q = pixel_label_estimate(probs, present, torch.zeros(3))
    expected = probs.clone()
    expected[:, 1] = 0
    expected /= expected.sum(1, keepdim=True)
    torch.testing.assert_close(q, expected)


def test_q_aux_wins_pixels_for_a_label_the_network_ignores() -> None:
    probs = torch.zeros(1, 2, 10, 10)
    probs[:, 0] = 0.99
    probs[:, 1] = 0.01
    probs[0, 1, 0, :5] = 0.02  # the label's most likely pixels
    q = pixel_label_estimate(probs, torch.tensor([[True, True]]), torch.tensor([0.0, 0.05]))
    assert torch.equal(q.argmax(1)[0, 0, :5], torch.ones(5, dtype=torch.long))
    assert int((q.argmax(1) == 1).sum()) == 5


def test_neighbourhood_loss_zero_on_a_constant_map_positive_across_an_edge_in_flat_colour() -> None:
    config = PLEConfig()
    image = torch.full((1, 3, 16, 16), 120.0)
    constant = torch.softmax(torch.tensor([0.3, 1.0, -0.5]), 0).view(1, 3, 1, 1).expand(1, 3, 16, 16)
    assert float(neighbourhood_loss(constant.contiguous(), image, config)) == pytest.approx(0.0, abs=1e-6)
    edge = torch.zeros(1, 3, 16, 16)
    edge[:, 0, :, :8] = 0.9
    edge[:, 1, :, 8:] = 0.9
    edge[:, 2] = 0.1
    assert float(neighbourhood_loss(edge, image, config)) > 0.01


def test_neighbourhood_loss_small_where_the_label_edge_follows_a_colour_edge() -> None:
    config = PLEConfig()
    edge = torch.full((1, 2, 16, 16), 0.05)
    edge[:, 0, :, :8] = 0.95
    edge[:, 1, :, 8:] = 0.95
    flat = torch.full((1, 3, 16, 16), 120.0)
    split = flat.clone()
    split[:, :, :, 8:] = 220.0
    assert float(neighbourhood_loss(edge, split, config)) < 0.01 * float(
        neighbourhood_loss(edge, flat, config)
    )


def test_miou_equals_a_hand_computation() -> None:
    truth = np.array([[0, 0, 1, 1], [0, 2, 2, IGNORE]])
    predicted = np.array([[0, 1, 1, 1], [0, 2, 0, 2]])
    counts = confusion(truth, predicted, 3)
    # label 0: tp 2 (truth 3, pred 3) -> 2/4; label 1: tp 2 (truth 2, pred 3) -> 2/3; label 2: tp 1 (2, 1) -> 1/2
    mean, iou = miou(counts)
    np.testing.assert_allclose(iou, [0.5, 2 / 3, 0.5])
    assert mean == pytest.approx((0.5 + 2 / 3 + 0.5) / 3)
    assert np.isnan(miou(confusion(np.zeros((2, 2), int), np.zeros((2, 2), int), 3))[1][1])


def _toy_data(n: int = 16, size: int = 32) -> SegmentationImages:
    rng = np.random.default_rng(0)
    images = np.full((n, size, size, 3), 40, np.uint8)
    labels = np.zeros((n, size, size), np.uint8)
    tags = np.zeros((n, 1), np.float32)
    for i in range(n // 2):
        y, x = rng.integers(0, size - 12, 2)
        images[i, y : y + 12, x : x + 12] = 220
        labels[i, y : y + 12, x : x + 12] = 1
        tags[i] = 1
    return SegmentationImages(images, tags, ["box"], labels)


@pytest.mark.parametrize("full", [False, True])
def test_a_tiny_training_run_lowers_the_loss(tmp_path, full: bool) -> None:
    torch.manual_seed(0)
    model = Segmenter(SegmenterConfig(num_labels=2, small_width=8, decoder=8))
    config = TrainConfig(epochs=6, batch_size=8, lr=1e-2, seed=0)
    result = train(model, _toy_data(), make_loss(PLEConfig(), full), config, tmp_path)
    totals = [sum(epoch.values()) for epoch in result.history]
    assert totals[-1] < 0.8 * totals[0]


def test_self_training_labels_mask_absent_labels_and_ignore_unsure_pixels() -> None:
    torch.manual_seed(0)
    model = Segmenter(SegmenterConfig(num_labels=4, small_width=8, decoder=8)).eval()
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    tags = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 0], [1, 1, 1], [0, 0, 1]], np.float32)
    labels = self_training_labels(model, images, tags, background=True, batch_size=2)
    with torch.no_grad():
        probs = torch.softmax(model(torch.stack([to_tensor(im) for im in images])), 1).numpy()
    allowed = np.concatenate([np.ones((5, 1), bool), tags > 0.5], axis=1)
    masked = np.where(allowed[:, :, None, None], probs, 0.0)
    np.testing.assert_array_equal(labels, masked.argmax(1))  # independent: argmax over present labels
    for n in range(5):
        assert set(np.unique(labels[n])) <= set(np.flatnonzero(allowed[n]).tolist())
    assert (labels[2] == 0).all()  # no tags: background everywhere
    share = masked.max(1) / masked.sum(1)
    unsure = self_training_labels(model, images, tags, background=True, confidence=0.6)
    np.testing.assert_array_equal(unsure == IGNORE, share < 0.6)
    refined = self_training_labels(model, images, tags, background=True, crf=CRFConfig())
    assert all(set(np.unique(refined[n])) <= set(np.flatnonzero(allowed[n]).tolist()) for n in range(5))
