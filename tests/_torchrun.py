"""Shared by the torchrun tests: launch a module on two CPU processes, and compare the ranks' weights."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def torchrun(module: str, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node=2 -m module args`` on 127.0.0.1 (gloo, one thread per rank); fails
    the test with both ranks' output when the launch does not exit cleanly."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"]
    command += ["--master_addr=127.0.0.1", f"--master_port={port}", "-m", module, *args]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-6000:]}"
    return done


def report_identical_and_finish(parameters: Iterable[torch.Tensor]) -> None:
    """In each rank of a torchrun script: gather the flattened ``parameters`` of every rank; rank 0 prints
    ``world=N identical=True|False``. Then all ranks meet at a barrier before the process group is
    destroyed, so that no rank closes its connections while another still reads from them (gloo aborts
    a process whose peer hangs up mid-operation)."""
    import torch.distributed as dist

    flat = torch.cat([p.detach().flatten() for p in parameters])
    gathered = [torch.zeros_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, flat)
    if dist.get_rank() == 0:
        same = all(torch.equal(gathered[0], g) for g in gathered)
        print(f"world={dist.get_world_size()} identical={same}", flush=True)
    dist.barrier()
    dist.destroy_process_group()
