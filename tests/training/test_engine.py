import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests._engine_toy import CONFIG, run
from wsseg.errors import BadInputError
from wsseg.training.engine import CHECKPOINT, TrainConfig, load_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def _weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [t.detach().clone() for t in model.state_dict().values()]


def test_same_seed_same_weights(tmp_path: Path) -> None:
    a = _weights(run(tmp_path / "a"))
    b = _weights(run(tmp_path / "b"))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_checkpoint_every_epoch_and_history(tmp_path: Path) -> None:
    run(tmp_path)
    state = load_checkpoint(tmp_path / CHECKPOINT)
    assert state["epoch"] == CONFIG.epochs - 1
    assert len(state["history"]) == CONFIG.epochs
    assert (tmp_path / "config.json").is_file()


def test_resume_after_kill_matches_uninterrupted_run(tmp_path: Path) -> None:
    reference = _weights(run(tmp_path / "ref"))
    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests._engine_toy", str(killed), "0.05"], cwd=ROOT, env=env
    )
    deadline = time.time() + 300  # generous: importing torch on a loaded machine is slow
    try:
        # Kill once the first epoch's checkpoint is on disk, in the middle of a later epoch.
        while not (killed / CHECKPOINT).exists():
            assert proc.poll() is None, "the training process ended before it could be killed"
            assert time.time() < deadline
            time.sleep(0.02)
        time.sleep(0.12)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    epoch_at_kill = load_checkpoint(killed / CHECKPOINT)["epoch"]
    assert epoch_at_kill < CONFIG.epochs - 1
    resumed = _weights(run(killed, resume=True))
    assert all(
        torch.allclose(x.float(), y.float(), atol=1e-6) for x, y in zip(reference, resumed, strict=True)
    )


def test_bad_config_and_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(BadInputError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nothing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(BadInputError, match="not a readable"):
        load_checkpoint(tmp_path / "junk.pt")


def test_callback_false_mid_epoch_stops_after_that_epochs_checkpoint(tmp_path: Path) -> None:
    from tests._engine_toy import toy_dataset, toy_loss, toy_model
    from wsseg.training.engine import train

    seen = []

    def stop_in_second_epoch(progress) -> bool:
        seen.append((progress.epoch, progress.step, progress.epoch_done))
        return not (progress.epoch == 1 and progress.step == 2 and not progress.epoch_done)

    result = train(toy_model(), toy_dataset(), toy_loss, CONFIG, tmp_path, callback=stop_in_second_epoch)
    assert result.stopped and len(result.history) == 2
    assert load_checkpoint(tmp_path / CHECKPOINT)["epoch"] == 1
    assert seen[-1] == (1, 6, True)  # the epoch finished and was checkpointed before stopping


def test_an_interrupt_in_the_end_of_epoch_report_leaves_that_epoch_unsaved(tmp_path: Path) -> None:
    """A job stopped while it reports an epoch's end redoes that epoch on resume, so the report (the
    job's stored curve) never lags the checkpoint."""
    from tests._engine_toy import toy_dataset, toy_loss, toy_model
    from wsseg.training.engine import train

    def interrupted_at_second_epochs_end(progress) -> None:
        if progress.epoch == 1 and progress.epoch_done:
            assert load_checkpoint(tmp_path / CHECKPOINT)["epoch"] == 0
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(
            toy_model(), toy_dataset(), toy_loss, CONFIG, tmp_path, callback=interrupted_at_second_epochs_end
        )
    assert load_checkpoint(tmp_path / CHECKPOINT)["epoch"] == 0
    resumed = train(toy_model(), toy_dataset(), toy_loss, CONFIG, tmp_path, resume=True)
    assert len(resumed.history) == CONFIG.epochs


def test_validation_after_every_epoch_joins_the_history(tmp_path: Path) -> None:
    """``validate`` sees the model in eval mode after each epoch; its figures are that epoch's
    ``val_*`` entries, computed here again from the saved model to check they are the model's own."""
    from tests._engine_toy import toy_dataset, toy_loss, toy_model
    from wsseg.training.engine import train

    x, y = toy_dataset().tensors
    modes: list[bool] = []

    def accuracy(model: torch.nn.Module) -> dict[str, float]:
        modes.append(model.training)
        with torch.no_grad():
            return {"accuracy": float(((model(x).squeeze(1) > 0).float() == y).float().mean())}

    model = toy_model()
    result = train(model, toy_dataset(), toy_loss, CONFIG, tmp_path, validate=accuracy)
    assert modes == [False] * CONFIG.epochs
    assert model.training  # back to training mode after each validation
    assert [set(h) for h in result.history] == [{"bce", "val_accuracy"}] * CONFIG.epochs
    saved = load_checkpoint(tmp_path / CHECKPOINT)
    assert saved["history"] == result.history
    model.load_state_dict(saved["model"])
    model.eval()
    assert result.history[-1]["val_accuracy"] == accuracy(model)["accuracy"]
