"""Mask R-CNN under torchrun: two CPU processes (gloo) end with identical weights; only rank 0 writes."""

from pathlib import Path

from tests._maskrcnn_data import tiny_project
from tests._torchrun import torchrun
from wsseg.training.engine import CHECKPOINT, load_checkpoint


def test_two_process_maskrcnn_training_keeps_ranks_identical(tmp_path: Path) -> None:
    project = tiny_project(tmp_path)
    done = torchrun("tests._ddp_maskrcnn", str(project.root))
    assert "world=2 identical=True" in done.stdout
    folder = project.root / "checkpoints" / "ddp"
    # One checkpoint (rank 0's, at the last epoch, no temporary file) and one run row: rank 1 wrote nothing.
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", CHECKPOINT]
    assert load_checkpoint(folder / CHECKPOINT)["epoch"] == 1
    runs = project.runs("maskrcnn")
    assert len(runs) == 1 and runs[0].status == "done" and runs[0].metrics["epochs_done"] == 2
