"""Mask R-CNN under torchrun: two CPU processes (gloo) end with identical weights; only rank 0 writes."""

import os
import socket
import subprocess
import sys
from pathlib import Path

from tests._maskrcnn_data import tiny_project
from wsseg.engine import CHECKPOINT, load_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def test_two_process_maskrcnn_training_keeps_ranks_identical(tmp_path: Path) -> None:
    project = tiny_project(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_addr=127.0.0.1",
            f"--master_port={port}",
            "-m",
            "tests._ddp_maskrcnn",
            str(project.root),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "world=2 identical=True" in done.stdout
    folder = project.root / "checkpoints" / "ddp"
    # One checkpoint (rank 0's, at the last epoch, no temporary file) and one run row: rank 1 wrote nothing.
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", CHECKPOINT]
    assert load_checkpoint(folder / CHECKPOINT)["epoch"] == 1
    runs = project.runs("maskrcnn")
    assert len(runs) == 1 and runs[0].status == "done" and runs[0].metrics["epochs_done"] == 2
