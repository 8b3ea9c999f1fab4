"""Peak response maps: normalisation, batched = one by one, relevance conservation, and a trained blob."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from wsseg.errors import BadInputError
from wsseg.methods.adjoint import walk_sequence
from wsseg.methods.prm import PRMConfig, peak_response_maps, peak_response_maps_naive
from wsseg.methods.windowed_adjoint import is_plain, walk, windowed_adjoint
from wsseg.models import ClassifierConfig, PeakClassifier
from wsseg.models.peaks import upsample_crm
from wsseg.models.receptive_field import receptive_radius


def random_model(backbone: str = "small", num_classes: int = 3) -> PeakClassifier:
    """A model whose BatchNorm layers have non-trivial statistics and signed scales."""
    torch.manual_seed(0)
    model = PeakClassifier(ClassifierConfig(num_classes=num_classes, backbone=backbone, small_width=8))
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(-1.0, 1.0)
    return model


@pytest.mark.parametrize("method", ["excitation", "gradient"])
def test_maps_are_distributions_at_input_resolution(method: str) -> None:
    model = random_model()
    result = peak_response_maps(model, torch.randn(3, 45, 52), PRMConfig(method=method, class_threshold=None))
    assert len(result.peaks) >= 2
    assert result.maps.shape == (len(result.peaks), 45, 52) and result.maps.dtype == np.float32
    assert (result.maps >= 0).all()
    np.testing.assert_allclose(result.maps.sum(axis=(1, 2)), 1.0, rtol=1e-5)
    assert result.class_scores.shape == (3,) and result.crm.shape == (3, 6, 7)


@pytest.mark.parametrize("backbone", ["small", "resnet18", "mobilenet_v3", "mobilenet_v2"])
@pytest.mark.parametrize("method", ["excitation", "gradient"])
def test_batched_maps_equal_one_by_one(backbone: str, method: str) -> None:
    model = random_model(backbone)
    image = torch.randn(1, 3, 48, 40)
    cfg = PRMConfig(method=method, class_threshold=None, max_peaks=5)
    batched = peak_response_maps(model, image, cfg)
    one_by_one = peak_response_maps_naive(model, image, cfg)
    assert batched.peaks == one_by_one.peaks and len(batched.peaks) == 5
    np.testing.assert_allclose(batched.maps, one_by_one.maps, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("method", ["excitation", "gradient"])
def test_windowed_adjoint_equals_the_full_size_one(method: str) -> None:
    # Seeds of several shapes and places, one touching the border, through both adjoints of the
    # same walk: the windowed one cuts each seed's receptive field out, the full-size one runs
    # every layer on the whole map.
    model = random_model().eval()
    layers = list(model.layers())
    assert is_plain(layers) and not is_plain(list(random_model("resnet18").layers()))
    image = torch.randn(1, 3, 150, 170)
    with torch.no_grad():
        crm, back = walk_sequence(layers, image, method == "excitation")
        crm_windowed, steps = walk(layers, image, method == "excitation")
        torch.testing.assert_close(crm_windowed, crm)
        seeds = torch.zeros(4, *crm.shape[1:])
        seeds[0, 0, 0, 0] = 1.0
        seeds[1, 1, 9, 10:12] = torch.tensor([0.3, 0.7])
        seeds[2, 2, 5:7, 3:5] = 0.25
        seeds[3, :, -1, -1] = 1.0
        full = back(seeds).sum(dim=1)
        windowed = windowed_adjoint(steps, seeds, image.shape[-2:])
    torch.testing.assert_close(windowed, full, rtol=1e-4, atol=1e-6)
    # Each map lies inside its seed's receptive field (57 px: 28 px either side of a cell centre).
    ys, xs = np.nonzero(windowed[0].numpy())
    assert ys.max() <= 28 + 4 and xs.max() <= 28 + 4 and (windowed[0] != 0).any()


def test_receptive_radius() -> None:
    assert receptive_radius(random_model().layers()) == 28  # 57 px
    assert receptive_radius(random_model("mobilenet_v3").layers()) == float("inf")


def test_excitation_conserves_relevance() -> None:
    # Each linear layer hands its relevance on in full (z > 0), so the raw input relevance sums to
    # the seed: the bilinear weights of the peak, which sum to 1.
    model = random_model().eval()
    image = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        crm, back = walk_sequence(list(model.layers()), image, True)
        seeds = torch.zeros(2, *upsample_crm(crm, 2).shape[1:])
        seeds[0, 0, 3, 4] = seeds[1, 2, 5, 2] = 1.0
        with torch.enable_grad():
            dummy = torch.zeros(2, *crm.shape[1:], requires_grad=True)
            (crm_seeds,) = torch.autograd.grad(upsample_crm(dummy, 2), dummy, seeds)
        relevance = back(crm_seeds)
    assert (relevance >= 0).all()
    np.testing.assert_allclose(relevance.sum(dim=(1, 2, 3)).numpy(), 1.0, rtol=1e-3)


def test_thresholds_and_mode() -> None:
    model = random_model()
    model.train()
    image = torch.randn(3, 32, 32)
    everything = peak_response_maps(model, image, PRMConfig(class_threshold=None))
    assert model.training  # restored after running in eval mode
    top = max(p.value for p in everything.peaks)
    strong = peak_response_maps(model, image, PRMConfig(class_threshold=None, peak_threshold=top))
    assert [p.value for p in strong.peaks] == [top]
    scores = everything.class_scores
    present = peak_response_maps(model, image, PRMConfig(class_threshold=float(np.median(scores))))
    assert {p.class_index for p in present.peaks} <= {
        int(c) for c in np.flatnonzero(scores >= np.median(scores))
    }
    none = peak_response_maps(model, image, PRMConfig(class_threshold=1e9))
    assert none.peaks == () and none.maps.shape == (0, 32, 32)
    with pytest.raises(BadInputError, match="method"):
        PRMConfig(method="gradcam")
    with pytest.raises(BadInputError, match="image"):
        peak_response_maps(model, torch.randn(2, 3, 32, 32))


def blob_images(
    n: int, size: int, gen: torch.Generator, p_blob: float
) -> tuple[torch.Tensor, torch.Tensor, list]:
    """Noise images, some with one bright disc of radius 5; labels Nx1 and disc centres (y, x)."""
    images = torch.randn(n, 3, size, size, generator=gen) * 0.5
    labels = torch.zeros(n, 1)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    centres = []
    for i in range(n):
        cy, cx = torch.randint(8, size - 8, (2,), generator=gen).tolist()
        if torch.rand(1, generator=gen).item() < p_blob:
            images[i, :, (yy - cy) ** 2 + (xx - cx) ** 2 <= 25] += 2.5
            labels[i] = 1.0
        centres.append((cy, cx))
    return images, labels, centres


@pytest.mark.parametrize("method", ["excitation", "gradient"])
def test_trained_network_finds_the_blob(method: str) -> None:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = PeakClassifier(ClassifierConfig(num_classes=1, backbone="small", small_width=8))
    model.backbone.body = model.backbone.body[:15]  # first five conv layers: stride 8, 41 px receptive field
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(40):
        images, labels, _ = blob_images(16, 64, gen, p_blob=0.5)
        loss = model.loss(model(images), labels)["classification"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    yy, xx = np.mgrid[:64, :64]
    for _ in range(4):
        images, _, ((cy, cx),) = blob_images(1, 64, gen, p_blob=1.0)
        result = peak_response_maps(model, images[0], PRMConfig(method=method))
        assert result.class_scores[0] > 0
        peak = result.peaks[0]
        assert np.hypot(peak.y - cy, peak.x - cx) <= 10  # the map grid is 4 px, the disc radius 5
        prm = result.maps[0]
        ay, ax = np.unravel_index(prm.argmax(), prm.shape)
        assert np.hypot(ay - cy, ax - cx) <= 6
        assert prm[(yy - cy) ** 2 + (xx - cx) ** 2 <= 64].sum() >= 0.6  # 5% of the image holds most mass


def test_prms_of_chosen_classes_only() -> None:
    """``PRMConfig.classes`` keeps the peaks (and maps) of those classes, the same ones as without it."""
    torch.manual_seed(0)
    model = PeakClassifier(ClassifierConfig(num_classes=3, backbone="small", small_width=8)).eval()
    image = torch.randn(1, 3, 48, 48)
    cfg = PRMConfig(class_threshold=None, peak_threshold=None)
    every = peak_response_maps(model, image, cfg)
    assert {p.class_index for p in every.peaks} == {0, 1, 2}
    chosen = peak_response_maps(model, image, dataclasses.replace(cfg, classes=(2,)))
    kept = [k for k, p in enumerate(every.peaks) if p.class_index == 2]
    assert chosen.peaks == tuple(every.peaks[k] for k in kept)
    np.testing.assert_allclose(chosen.maps, every.maps[kept], atol=1e-6)
