"""Each CAM method's map against its formula computed here with autograd on a two-layer network, and
the map's size for every backbone."""

import numpy as np
import pytest
import torch
from torch import nn

from wsseg.errors import BadInputError
from wsseg.methods.cams import METHODS, available, class_map, parse_methods
from wsseg.models.cam_models import CamModel, peak_classifier_cams
from wsseg.models.classifier import ClassifierConfig, PeakClassifier


class TwoLayer(nn.Module):
    """conv 3x3 -> ReLU (the target layer, at full resolution) -> 1x1 conv -> tanh -> mean: class scores
    whose gradients vary over the image (a linear head would make Grad-CAM equal CAM)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.act = nn.ReLU()
        self.head = nn.Conv2d(6, 3, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))

    def scores(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features).tanh().mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scores(self.features(x))


@pytest.fixture(scope="module")
def tiny() -> tuple[TwoLayer, CamModel, torch.Tensor]:
    net = TwoLayer().eval()
    model = CamModel(net, ["a", "b", "c"], {"act": net.act}, "act", 1, None, "two layers")
    image = torch.randn(1, 3, 12, 16, generator=torch.Generator().manual_seed(1))
    return net, model, image


def _scaled(cam: np.ndarray) -> np.ndarray:
    """Negatives to 0, then over the range, as the library shows every map."""
    cam = np.maximum(cam, 0)
    cam = cam - cam.min()
    return cam / (cam.max() + 1e-7)


def _by_hand(net: TwoLayer, image: torch.Tensor, c: int, method: str) -> np.ndarray:
    a = net.features(image).detach().requires_grad_(True)
    (g,) = torch.autograd.grad(net.scores(a)[0, c], a)
    a, g = a[0].detach().numpy().astype(np.float64), g[0].numpy().astype(np.float64)
    total = a.sum(axis=(1, 2), keepdims=True)
    if method == "gradcam":
        weights = g.mean(axis=(1, 2))
    elif method == "xgradcam":
        weights = (g * a / (total + 1e-7)).sum(axis=(1, 2))
    elif method == "gradcam++":
        alpha = np.where(g != 0, g**2 / (2 * g**2 + total * g**3 + 1e-6), 0)
        weights = (np.maximum(g, 0) * alpha).sum(axis=(1, 2))
    elif method == "scorecam":
        low = a.min(axis=(1, 2), keepdims=True)
        masks = (a - low) / (a.max(axis=(1, 2), keepdims=True) - low + 1e-8)
        with torch.no_grad():
            masked = image * torch.from_numpy(masks[:, None]).float()
            scores = net(masked)[:, c].double()
        weights = torch.softmax(scores, 0).numpy()
    elif method == "layercam":
        return _scaled((np.maximum(g, 0) * a).sum(axis=0))
    elif method == "hirescam":
        return _scaled((g * a).sum(axis=0))
    elif method == "eigencam":
        flat = a.reshape(len(a), -1).T
        flat = flat - flat.mean(axis=0)
        first = np.linalg.svd(flat, full_matrices=False)[2][0]
        return _scaled((flat @ first).reshape(a.shape[1:]))
    return _scaled(np.tensordot(weights, a, axes=1))


@pytest.mark.parametrize("method", [m for m in METHODS if m != "crm"])
@pytest.mark.parametrize("c", [0, 2])
def test_each_method_matches_its_formula(tiny, method: str, c: int) -> None:
    net, model, image = tiny
    got = class_map(model, image, c, method)
    expected = _by_hand(net, image, c, method)
    assert got.shape == (12, 16) and got.dtype == np.float32
    assert got.min() >= 0 and got.max() <= 1 + 1e-6
    if method == "eigencam":  # the SVD leaves the component's sign open: either is the method's map
        flipped = _by_hand_flipped(net, image)
        assert min(np.abs(got - expected).max(), np.abs(got - flipped).max()) < 1e-4
    else:
        np.testing.assert_allclose(got, expected, atol=1e-4)


def _by_hand_flipped(net: TwoLayer, image: torch.Tensor) -> np.ndarray:
    a = net.features(image)[0].detach().numpy().astype(np.float64)
    flat = a.reshape(len(a), -1).T
    flat = flat - flat.mean(axis=0)
    first = np.linalg.svd(flat, full_matrices=False)[2][0]
    return _scaled(-(flat @ first).reshape(a.shape[1:]))


def test_gradient_methods_differ_between_classes(tiny) -> None:
    _, model, image = tiny
    assert np.abs(class_map(model, image, 0, "gradcam") - class_map(model, image, 1, "gradcam")).max() > 0.05


def test_crm_is_the_classifiers_own_map_upsampled() -> None:
    torch.manual_seed(0)
    net = PeakClassifier(ClassifierConfig(num_classes=2, backbone="small")).eval()
    model = peak_classifier_cams(net, ["cat", "dog"], "test")
    image = torch.randn(1, 3, 64, 48)
    got = class_map(model, image, 1, "crm")
    with torch.no_grad():
        crm = net.class_response_maps(image)[0, 1].clamp(min=0).numpy()
    assert got.shape == (64, 48)
    # the map's maximum sits over the CRM cell with the strongest response
    y, x = np.unravel_index(int(got.argmax()), got.shape)
    cy, cx = np.unravel_index(int(crm.argmax()), crm.shape)
    assert abs(y // net.stride - cy) <= 1 and abs(x // net.stride - cx) <= 1
    assert got.max() == pytest.approx(1.0) if crm.max() > 0 else got.max() == 0


@pytest.mark.parametrize("backbone", ["small", "resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3"])
def test_every_method_gives_a_map_of_the_image_size(backbone: str) -> None:
    torch.manual_seed(0)
    net = PeakClassifier(ClassifierConfig(num_classes=2, backbone=backbone)).eval()
    model = peak_classifier_cams(net, ["cat", "dog"], "test")
    image = torch.randn(1, 3, 70, 54)
    methods = [
        m for m in available(model) if m != "scorecam" or backbone == "small"
    ]  # Score-CAM: one pass a channel
    for method in methods:
        for layer in (None, list(model.layers)[0]):
            got = class_map(model, image, 0, method, layer)
            assert got.shape == (70, 54), (method, layer)
            assert np.isfinite(got).all() and got.min() >= 0 and got.max() <= 1 + 1e-6


def test_bad_requests_name_what_was_expected(tiny) -> None:
    _, model, image = tiny
    with pytest.raises(BadInputError, match="not one of the 3 classes"):
        class_map(model, image, 3, "gradcam")
    with pytest.raises(BadInputError, match="crm"):  # a plain classifier has no class response maps
        class_map(model, image, 0, "crm")
    with pytest.raises(BadInputError, match="not a layer"):
        class_map(model, image, 0, "gradcam", "conv9")
    with pytest.raises(BadInputError, match="--methods"):
        parse_methods("gradcam,nope")
    assert parse_methods("all", model) == [m for m in METHODS if m != "crm"]
    assert parse_methods("GradCAM, eigencam") == ["gradcam", "eigencam"]
