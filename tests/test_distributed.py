"""The training engine under torchrun: two CPU processes (gloo) end with identical weights."""

import os
import socket
import subprocess
import sys
from pathlib import Path

from wsseg.engine import CHECKPOINT, load_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def test_two_process_ddp_on_cpu_keeps_ranks_identical(tmp_path: Path) -> None:
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
            "tests._ddp_toy",
            str(tmp_path),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "world=2 identical=True" in done.stdout
    # One checkpoint, written by rank 0, at the last epoch, with no temporary file left behind.
    assert load_checkpoint(tmp_path / CHECKPOINT)["epoch"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", CHECKPOINT]
