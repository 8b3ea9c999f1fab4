"""Backbones: output shape and stride, weights files (weights=None everywhere: no downloads)."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision

from wsseg.errors import BadInputError
from wsseg.models.backbones import BACKBONES, SmallCNN, build_backbone


@pytest.mark.parametrize("name", sorted(BACKBONES))
@pytest.mark.parametrize("size", [(64, 64), (70, 53)])
def test_output_shape_and_stride(name: str, size: tuple[int, int]) -> None:
    backbone = build_backbone(name, weights=None).eval()
    assert backbone.stride == (16 if name.startswith("mobilenet") else 8)
    with torch.no_grad():
        out = backbone(torch.randn(1, 3, *size))
    expected = (1, backbone.out_channels, *(math.ceil(s / backbone.stride) for s in size))
    assert tuple(out.shape) == expected


def test_small_receptive_field_covers_whole_objects() -> None:
    backbone = build_backbone("small").eval()
    assert 200_000 <= sum(p.numel() for p in backbone.parameters()) <= 1_000_000
    image = torch.randn(1, 3, 240, 240, requires_grad=True)
    out = backbone(image)
    cy, cx = out.shape[2] // 2, out.shape[3] // 2
    out[0, :, cy, cx].sum().backward()
    rows = torch.nonzero(image.grad.abs().sum(dim=(0, 1, 3)))[:, 0]
    extent = int(rows.max() - rows.min() + 1)
    # Designed: 57 px, just above the largest shapes object (50 px) and no more (docs/benchmark.md).
    assert 50 < extent <= 57


def test_small_weights_file_round_trip(tmp_path) -> None:
    src = build_backbone("small", width=8)
    path = tmp_path / "small.pt"
    torch.save(src.state_dict(), path)
    dst = build_backbone("small", weights=path, width=8)
    for (k, a), b in zip(src.state_dict().items(), dst.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_resnet18_loads_a_torchvision_state_dict(tmp_path) -> None:
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)  # includes fc.*, which the backbone ignores
    backbone = build_backbone("resnet18", weights=str(path))
    assert torch.equal(backbone.body.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)
    assert torch.equal(backbone.body.bn1.running_var, reference.bn1.running_var)


def test_missing_weights_file_is_a_clear_error(tmp_path) -> None:
    path = tmp_path / "nope.pt"
    with pytest.raises(BadInputError, match="not found") as info:
        build_backbone("resnet18", weights=path)
    assert str(path) in str(info.value)


def test_incompatible_weights_file_is_a_clear_error(tmp_path) -> None:
    path = tmp_path / "small8.pt"
    torch.save(build_backbone("small", width=8).state_dict(), path)
    with pytest.raises(BadInputError, match="do not fit"):
        build_backbone("small", weights=path, width=16)
    with pytest.raises(BadInputError, match="do not fit"):
        build_backbone("resnet18", weights=path)


def test_unreadable_weights_file_is_a_clear_error(tmp_path) -> None:
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(BadInputError, match="cannot be read"):
        build_backbone("small", weights=path)
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(BadInputError, match="state dict"):
        build_backbone("small", weights=tmp_path / "list.pt")


def test_unknown_backbone_and_imagenet_for_small() -> None:
    with pytest.raises(BadInputError, match="unknown backbone"):
        build_backbone("vgg16")
    with pytest.raises(BadInputError, match="no ImageNet weights"):
        build_backbone("small", weights="imagenet")


@pytest.mark.parametrize(("dilations", "receptive_field"), [((2, 3), 121), ((1, 1), 73), ((1,), 57)])
def test_small_receptive_field_follows_its_dilations(dilations, receptive_field):
    """The gradient of one output cell reaches exactly the documented 41 + 16 * sum(dilations) pixels."""
    torch.manual_seed(0)
    net = SmallCNN(width=4, dilations=dilations).eval()
    for m in net.modules():  # positive weights: no gradient cancels by chance inside the field
        if isinstance(m, torch.nn.Conv2d):
            m.weight.data.abs_()
    x = torch.ones(1, 3, 256, 256, requires_grad=True)  # every unit active: ReLU passes gradient
    out = net(x)
    out[0, :, 16, 16].sum().backward()
    cols = torch.nonzero(x.grad[0].abs().sum(0).sum(0))
    assert int(cols.max() - cols.min() + 1) == receptive_field


def test_mobilenet_v2_takes_a_features_only_file_as_the_shared_weights_are(tmp_path) -> None:
    reference = torchvision.models.mobilenet_v2(weights=None)
    path = tmp_path / "mobilenet_v2_features.pth"  # the shared file's format: features.* keys only,
    state = {  # and no BatchNorm step counters (it was converted from Keras)
        k: v
        for k, v in reference.state_dict().items()
        if k.startswith("features.") and not k.endswith("num_batches_tracked")
    }
    torch.save(state, path)
    backbone = build_backbone("mobilenet_v2", weights=str(path)).eval()
    assert torch.equal(backbone.body.features[17].conv[1][0].weight, reference.features[17].conv[1][0].weight)
    assert backbone.body.features[14].conv[1][0].stride == (1, 1)  # the last stage dilated: stride 16
    assert backbone.body.features[14].conv[1][0].dilation == (2, 2)


def test_weight_names_use_only_torchs_cache_and_say_so(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from wsseg.models.backbones import weights_cache_path

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(BadInputError, match=r"ResNet50_Weights\.IMAGENET1K_V2 is not in torch's cache"):
        build_backbone("resnet50", weights="imagenet")  # imagenet: torchvision's DEFAULT, V2 for ResNet-50
    with pytest.raises(BadInputError, match=r"IMAGENET1K_V1 is not in torch's cache .*never downloads"):
        build_backbone("resnet18", weights="IMAGENET1K_V1")
    with pytest.raises(BadInputError, match="neither a file nor one of torchvision's names .*IMAGENET1K_V2"):
        build_backbone("mobilenet_v2", weights="IMAGENET1K_V9")
    # The file in the cache is what the name loads (here one made by the test, in torchvision's format).
    cached = weights_cache_path(torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1)
    cached.parent.mkdir(parents=True)
    reference = torchvision.models.mobilenet_v2()
    torch.save(reference.state_dict(), cached)
    backbone = build_backbone("mobilenet_v2", weights="IMAGENET1K_V1")
    assert torch.equal(backbone.body.features[3].conv[0][0].weight, reference.features[3].conv[0][0].weight)
    cached.write_bytes(b"not a state dict")
    with pytest.raises(BadInputError, match="could not load torchvision's weights for mobilenet_v2"):
        build_backbone("mobilenet_v2", weights="IMAGENET1K_V1")
