"""PeakClassifier: output contract, loss, GAP versus PSL, input normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wsseg.errors import BadInputError
from wsseg.models import ClassifierConfig, PeakClassifier
from wsseg.models.normalise import IMAGENET_MEAN, IMAGENET_STD, normalize
from wsseg.models.peaks import PeakConfig


def small_model(**kw) -> PeakClassifier:
    torch.manual_seed(0)
    return PeakClassifier(ClassifierConfig(num_classes=3, backbone="small", small_width=8, **kw))


def test_forward_with_peaks() -> None:
    model = small_model(peaks=PeakConfig(upsample=2))
    out = model(torch.randn(2, 3, 64, 48))
    assert out["crm"].shape == (2, 3, 8, 6)
    assert out["logits"].shape == (2, 3)
    assert out["crm_up"].shape == (2, 3, 16, 12)
    assert out["peaks"].dtype == torch.bool and out["peaks"].shape == out["crm_up"].shape
    kept = out["peaks"].float()
    expected = (out["crm_up"] * kept).sum((2, 3)) / kept.sum((2, 3))
    assert torch.allclose(out["logits"], expected)


def test_forward_without_peaks_is_global_average_pooling() -> None:
    model = small_model(peak_stimulation=False)
    out = model(torch.randn(2, 3, 32, 32))
    assert set(out) == {"crm", "logits"}
    assert torch.allclose(out["logits"], out["crm"].mean(dim=(2, 3)))


def test_layers_reproduce_the_crm() -> None:
    model = small_model().eval()
    x = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        assert torch.allclose(model.layers()(x), model(x)["crm"])


def test_loss_is_multilabel_soft_margin_and_trains() -> None:
    model = small_model()
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([[1, 0, 1], [0, 0, 0], [1, 1, 1], [0, 1, 0]])
    out = model(x)
    losses = model.loss(out, y)
    p = torch.sigmoid(out["logits"])
    by_hand = -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()
    assert torch.allclose(losses["classification"], by_hand, atol=1e-5)
    losses["classification"].backward()
    assert model.head.weight.grad is not None and model.head.weight.grad.abs().sum() > 0
    with pytest.raises(BadInputError, match="targets"):
        model.loss(out, y[:, :2])


def test_bad_images_and_config() -> None:
    with pytest.raises(BadInputError, match="images"):
        small_model()(torch.randn(1, 1, 32, 32))
    with pytest.raises(BadInputError, match="backbone"):
        ClassifierConfig(num_classes=3, backbone="alexnet")
    with pytest.raises(BadInputError, match="num_classes"):
        ClassifierConfig(num_classes=0)


def test_normalize() -> None:
    images = np.zeros((2, 4, 5, 3), dtype=np.uint8)
    images[..., 0] = 255
    x = normalize(images)
    assert x.shape == (2, 3, 4, 5) and x.dtype == torch.float32
    assert torch.allclose(x[:, 0], torch.tensor((1 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]))
    assert torch.allclose(x[:, 2], torch.tensor(-IMAGENET_MEAN[2] / IMAGENET_STD[2]))
    assert normalize(torch.from_numpy(images[0])).shape == (1, 3, 4, 5)
    with pytest.raises(BadInputError, match="uint8"):
        normalize(images.astype(np.float32))
    with pytest.raises(BadInputError, match="RGB"):
        normalize(np.zeros((2, 4, 5), dtype=np.uint8))


def test_a_frozen_backbone_trains_only_the_head(tmp_path) -> None:
    """The backbone's weights and BatchNorm statistics stay as loaded from the file while the head
    learns, even in train mode; a frozen backbone without weights is refused by name."""
    import torchvision

    from wsseg.training.engine import TrainConfig, train

    reference = torchvision.models.mobilenet_v2(weights=None)
    torch.manual_seed(0)
    for module in reference.modules():  # statistics unlike a fresh network's, to see they are kept
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
    path = tmp_path / "mnv2.pth"
    torch.save(reference.state_dict(), path)
    config = ClassifierConfig(
        num_classes=2,
        backbone="mobilenet_v2",
        weights=str(path),
        peak_stimulation=False,
        frozen_backbone=True,
    )
    model = PeakClassifier(config)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    assert not model.backbone.training and model.head.training
    images = torch.rand(8, 3, 64, 64)
    targets = torch.tensor([[1, 0], [0, 1]] * 4, dtype=torch.float32)
    data = torch.utils.data.TensorDataset(images, targets)

    def loss(net, batch):
        return net.loss(net(batch[0]), batch[1])

    train(model, data, loss, TrainConfig(epochs=2, batch_size=4, lr=1e-2), tmp_path / "ckpt")
    after = model.state_dict()
    backbone = [k for k in before if k.startswith("backbone.")]
    assert any("running_mean" in k for k in backbone)
    assert all(torch.equal(before[k], after[k]) for k in backbone)
    loaded = reference.state_dict()["features.1.conv.2.running_mean"]
    assert torch.equal(after["backbone.body.features.1.conv.2.running_mean"], loaded)
    assert not torch.equal(before["head.weight"], after["head.weight"])
    with pytest.raises(BadInputError, match="frozen_backbone"):
        ClassifierConfig(num_classes=2, backbone="mobilenet_v2", frozen_backbone=True)
