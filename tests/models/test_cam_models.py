"""Classifiers for the CAM methods: a project's PRM classifier and torchvision ImageNet classifiers from
a weights file or a cached weight name (offline: a clear message)."""

import pytest
import torch
import torchvision

from wsseg.errors import BadInputError
from wsseg.models.backbones import weights_cache_path
from wsseg.models.cam_models import imagenet_classes, peak_classifier_cams, torchvision_cams
from wsseg.models.classifier import ClassifierConfig, PeakClassifier


def test_a_whole_classifier_file_loads_with_imagenet_names(tmp_path) -> None:
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None).eval()
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    model = torchvision_cams("resnet18", path)
    assert len(model.classes) == 1000 and model.classes[0] == "tench"
    assert list(model.layers) == ["layer1", "layer2", "layer3", "layer4"] and model.default_layer == "layer4"
    image = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(
            model.network(image), reference(image)
        )  # the file's weights, head included
    assert model.crm is None and "resnet18.pth" in model.source


def test_a_file_without_the_head_is_refused_by_name(tmp_path) -> None:
    features = {
        k: v
        for k, v in torchvision.models.mobilenet_v2(weights=None).state_dict().items()
        if k.startswith("features.")
    }
    path = tmp_path / "features-only.pth"
    torch.save(features, path)
    with pytest.raises(BadInputError, match="features-only.pth.*no classifier head"):
        torchvision_cams("mobilenet_v2", path)


def test_a_weight_name_not_in_the_cache_says_so_without_downloading(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    entry = torchvision.models.ResNet50_Weights.DEFAULT
    assert not weights_cache_path(entry).exists()
    with pytest.raises(BadInputError, match="not in torch's cache.*never downloads"):
        torchvision_cams("resnet50", "imagenet")
    with pytest.raises(BadInputError, match="expected one of"):
        torchvision_cams("vgg16", "imagenet")


def test_a_weight_name_in_the_cache_is_used(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    entry = torchvision.models.MobileNet_V3_Large_Weights.IMAGENET1K_V1
    weights_cache_path(entry).parent.mkdir(parents=True)
    torch.manual_seed(3)
    torch.save(torchvision.models.mobilenet_v3_large(weights=None).state_dict(), weights_cache_path(entry))
    model = torchvision_cams("mobilenet_v3", "IMAGENET1K_V1")
    assert "IMAGENET1K_V1" in model.source and model.default_layer == "features.16"
    assert model.classes == imagenet_classes("mobilenet_v3")


def test_peak_classifier_layers_shallow_to_deep() -> None:
    for backbone, last in (
        ("small", None),
        ("resnet18", "backbone.body.layer4"),
        ("mobilenet_v2", "backbone.body.features.18"),
    ):
        net = PeakClassifier(ClassifierConfig(num_classes=2, backbone=backbone))
        model = peak_classifier_cams(net, ["a", "b"], "test")
        if backbone == "small":  # its last module is the ReLU that ends the last conv + BatchNorm + ReLU
            assert isinstance(net.backbone.body[-1], torch.nn.ReLU)
            last = f"backbone.body.{len(net.backbone.body) - 1}"
            assert len(model.layers) == len(net.backbone.body) // 3
        assert model.default_layer == last, backbone
        assert model.layer(None) is model.layers[last]
    with pytest.raises(BadInputError, match="expected 2 names"):
        peak_classifier_cams(net, ["a"], "test")
