"""``--device`` / ``WSSEG_DEVICE``: the device a command trains or predicts on, refused by name when
this machine lacks it; mixed precision only on a GPU, so a CPU run is the same with it on or off."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests._engine_toy import toy_dataset, toy_loss, toy_model
from wsseg.cli import main
from wsseg.errors import BadInputError
from wsseg.training.device import DEVICE_ENV, amp_dtype, autocast, chosen_device
from wsseg.training.engine import TrainConfig, train

NO_GPU = not torch.cuda.is_available()


def test_by_default_the_gpu_when_torch_sees_one_else_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    assert chosen_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    monkeypatch.setenv(DEVICE_ENV, "CPU")
    assert chosen_device() == torch.device("cpu")


@pytest.mark.parametrize(
    ("value", "message"),
    [("banana", "is not a device"), ("meta", "is not supported"), ("cuda:99", None)],
)
def test_a_device_that_is_not_one_or_not_here_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str | None
) -> None:
    monkeypatch.setenv(DEVICE_ENV, value)
    with pytest.raises(BadInputError) as caught:
        chosen_device()
    assert caught.value.source == f"--device {value}"
    expected = message or ("torch sees no CUDA GPU" if NO_GPU else "GPU(s): cuda:0 to")
    assert expected in str(caught.value)


@pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU")
def test_training_on_a_gpu_this_machine_lacks_is_refused_before_any_work(
    demo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    argv = ["train-classifier", "--project", str(demo), "--epochs", "1", "--name", "gpu", "--device", "cuda"]
    assert main(argv) == 2
    assert (
        "--device cuda: torch sees no CUDA GPU on this machine; use --device cpu" in capsys.readouterr().err
    )
    assert not (demo / "checkpoints" / "gpu").exists()
    import os

    assert DEVICE_ENV not in os.environ  # the option does not outlive its command


def test_mixed_precision_is_for_gpus_only_so_a_cpu_run_is_the_same_either_way(tmp_path: Path) -> None:
    assert amp_dtype(torch.device("cpu")) is None
    with autocast(torch.device("cpu"), None):
        assert torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype == torch.float32
    weights = []
    for amp in (True, False):
        model = toy_model()
        config = TrainConfig(epochs=2, batch_size=8, lr=1e-2, seed=3, amp=amp)
        train(model, toy_dataset(), toy_loss, config, tmp_path / f"amp-{amp}")
        weights.append(model.state_dict())
    for key, value in weights[0].items():
        assert torch.equal(value, weights[1][key]), key
