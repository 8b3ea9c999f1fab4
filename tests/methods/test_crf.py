"""The dense CRF: its filters against exact computations, and salt-and-pepper noise removed."""

import numpy as np
import torch

from wsseg.methods.crf import BilateralGrid, CRFConfig, dense_crf, gaussian_filter, local_message


def _two_regions(size: int = 48) -> tuple[torch.Tensor, np.ndarray]:
    """A left/right two-region image (float 1x3xHxW, 0..255) with mild noise, and its true labels."""
    rng = np.random.default_rng(0)
    image = np.zeros((size, size, 3), np.float32)
    image[:, : size // 2] = (200, 60, 40)
    image[:, size // 2 :] = (40, 90, 200)
    image += rng.normal(0, 4, image.shape)
    truth = np.zeros((size, size), np.int64)
    truth[:, size // 2 :] = 1
    return torch.from_numpy(image.clip(0, 255)).permute(2, 0, 1)[None], truth


def test_crf_removes_salt_and_pepper_noise_from_a_two_region_label_map() -> None:
    image, truth = _two_regions()
    rng = np.random.default_rng(1)
    noisy = truth.copy()
    flip = rng.random(truth.shape) < 0.2
    noisy[flip] = 1 - noisy[flip]
    probs = torch.from_numpy(np.stack([noisy == 0, noisy == 1]).astype(np.float32) * 0.4 + 0.3)[None]
    refined = dense_crf(probs, image, CRFConfig(scale=1.0)).argmax(1)[0].numpy()
    assert (noisy != truth).mean() > 0.15
    assert (refined != truth).mean() < 0.01
    refined_half = dense_crf(probs, image, CRFConfig()).argmax(1)[0].numpy()
    assert (refined_half != truth).mean() < 0.02


def test_crf_output_is_a_distribution_per_pixel() -> None:
    image, _ = _two_regions(24)
    probs = torch.softmax(torch.randn(1, 3, 24, 24, generator=torch.Generator().manual_seed(0)), 1)
    q = dense_crf(probs, image)
    torch.testing.assert_close(q.sum(1), torch.ones(1, 24, 24))


def test_bilateral_grid_is_close_to_the_exact_normalised_appearance_filter() -> None:
    rng = np.random.default_rng(2)
    h = w = 14
    image = torch.from_numpy(rng.uniform(0, 255, (3, h, w)).astype(np.float32))
    values = torch.from_numpy(rng.random((2, h, w)).astype(np.float32))
    sxy, srgb = 6.0, 40.0
    got = BilateralGrid.build(image, sxy, srgb).filter(values)
    ys, xs = np.mgrid[:h, :w]
    pos = np.stack([ys.ravel(), xs.ravel()], 1) / sxy
    col = image.reshape(3, -1).T.numpy() / srgb
    feats = np.concatenate([pos, col], 1)
    d2 = ((feats[:, None] - feats[None]) ** 2).sum(-1)
    kernel = np.exp(-d2 / (2 * 0.9**2))  # the grid's effective width is about 0.9 standard deviations
    exact = (kernel @ values.reshape(2, -1).T.numpy().astype(np.float64)) / kernel.sum(1, keepdims=True)
    got = got.reshape(2, -1).T.numpy()
    assert np.corrcoef(got.ravel(), exact.ravel())[0, 1] > 0.95
    assert np.abs(got - exact).mean() < 0.03


def test_gaussian_filter_keeps_a_constant_and_local_message_averages_neighbours_only() -> None:
    constant = torch.full((1, 2, 9, 9), 0.5)
    torch.testing.assert_close(gaussian_filter(constant, 2.0), constant)
    probs = torch.zeros(1, 2, 9, 9)
    probs[:, 0] = 1.0
    probs[0, :, 4, 4] = torch.tensor([0.0, 1.0])  # one odd pixel
    message = local_message(probs, torch.zeros(1, 3, 9, 9), radius=1, dilation=1)
    assert float(message[0, 0, 4, 4]) == 1.0  # itself excluded
    assert abs(float(message[0, 1, 4, 5]) - 1 / 8) < 0.02  # one of 8 near-equal weights
