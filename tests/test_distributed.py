"""The training engine under torchrun: two CPU processes (gloo) end with identical weights."""

from pathlib import Path

from tests._torchrun import torchrun
from wsseg.training.engine import CHECKPOINT, load_checkpoint


def test_two_process_ddp_on_cpu_keeps_ranks_identical(tmp_path: Path) -> None:
    done = torchrun("tests._ddp_toy", str(tmp_path))
    assert "world=2 identical=True" in done.stdout
    # One checkpoint, written by rank 0, at the last epoch, with no temporary file left behind.
    assert load_checkpoint(tmp_path / CHECKPOINT)["epoch"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", CHECKPOINT]
