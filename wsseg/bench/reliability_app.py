"""Reliability campaign, the app's part: ``kill -9`` of the Curate page while it saves decisions.

A child process (``pages/curate_driver.py``) runs the real page (``app.py`` and ``pages/curate.py``)
headless with Streamlit's AppTest, no browser: it accepts or rejects the mask the page shows, again and
again, and prints an acknowledgement once the page, rerun after the click, counts the decision. The
campaign kills it with SIGKILL at a random moment, several times on the same project, and counts
acknowledged decisions missing afterwards and problems reported by ``Project.check``. (The served app,
killed while a real browser clicks, is tested by ``tests/app/test_killed_app.py``.) The core never
imports streamlit; only the child does.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from wsseg.bench.reliability_project import seed_project
from wsseg.errors import WssegError
from wsseg.store.project import Project
from wsseg.views.serve import app_folder

#: The Streamlit side, in the app's folder (``app_folder``): the core never imports it.
DRIVER = Path("pages") / "curate_driver.py"


def _curator(project: Project, seed: int, folder: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": str(folder) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    return subprocess.Popen(
        [sys.executable, str(folder / DRIVER), str(project.root), str(seed), str(folder / "app.py")],
        stdout=subprocess.PIPE,
        text=True,
        cwd=folder,
        env=env,
    )


def killed_app(work: Path, rounds: int = 3, seed: int = 0, n_images: int = 40) -> dict[str, Any] | None:
    """Kill the Curate page's process with SIGKILL ``rounds`` times, each at a random moment 0.5 to 3 s
    after its first acknowledged decision; every acknowledged decision must be stored, once, and the
    store consistent. None when the app's files are not installed with the package."""
    try:
        folder = app_folder()
    except WssegError:
        return None
    if not (folder / DRIVER).is_file():
        return None
    rng = random.Random(seed)
    project = seed_project(work / "killed_app", n_images=n_images, masks_per_image=2, run=True)
    acknowledged: list[tuple[int, str]] = []
    problems = kills = 0
    for r in range(rounds):
        proc = _curator(project, seed * 1000 + r, folder)
        assert proc.stdout is not None
        deadline = None
        while deadline is None or time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:  # the page stopped (an error, or nothing left to review)
                break
            if line.startswith("ack"):
                _, mask_id, status = line.split()
                acknowledged.append((int(mask_id), status))
                deadline = deadline or time.monotonic() + rng.uniform(0.5, 3.0)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        problems += len(project.check())
    masks = {m["id"]: m for m in project.pseudo_masks()}
    decisions: dict[int, list[str]] = {}
    for edit in project.edit_history():
        decisions.setdefault(edit["mask_id"], []).append(edit["after"]["status"])
    lost = sum(
        1
        for mask_id, status in acknowledged
        if masks.get(mask_id, {}).get("status") != status or decisions.get(mask_id) != [status]
    )
    return {
        "faults_injected": kills,
        "acknowledged_decisions": len(acknowledged),
        "acknowledged_edits_lost": lost,
        "store_problems": problems,
    }
