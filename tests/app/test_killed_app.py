"""Crash safety of the app: ``kill -9`` of the Streamlit server while the Curate page saves decisions.

The real app is served (``streamlit run``) on a project with 60 automatic pseudo masks and driven in
Chromium: accept or reject, as fast as the page answers. A decision counts as acknowledged once the
page shows it (the queue's caption counts it). At a random moment during the clicks the server gets
SIGKILL. Afterwards the database must pass SQLite's own checks and hold every acknowledged decision,
once, and nothing that was not clicked. (``wsseg bench --reliability`` kills the same page, run
without a browser, several times: ``wsseg.bench.reliability_app``.)
"""

from __future__ import annotations

import os
import random
import re
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from tests.app.helpers import CHROMIUM, CHROMIUM_ARGS, start_server
from tests.app.helpers import wait_idle as _idle
from tests.curation_project import tiny_project
from wsseg.store.project import DB_NAME, Project

TIMEOUT = 90_000
COUNTS = re.compile(r"(\d+) (accepted|rejected)")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)"),
]


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
        )
        yield context
        context.close()


def _decided(page: object, timeout: float = TIMEOUT) -> int:
    """How many masks the page says are accepted or rejected (the queue's caption)."""
    text = page.get_by_text("automatic masks, most likely wrong first").inner_text(timeout=timeout)
    return sum(int(n) for n, _ in COUNTS.findall(text))


def _current_mask(page: object) -> int:
    caption = page.get_by_text(re.compile(r"^mask \d+ · ")).inner_text(timeout=TIMEOUT)
    return int(caption.split()[1])


def _click_until_killed(
    page: object, pid: int, rng: random.Random
) -> tuple[list[tuple[int, str]], list[int]]:
    """Accept or reject the shown mask again and again; SIGKILL the server ``pid`` at a random moment.
    Returns the acknowledged (mask id, status) decisions and every mask clicked."""
    acknowledged: list[tuple[int, str]] = []
    clicked: list[int] = []
    killer = threading.Timer(rng.uniform(1.0, 4.0), os.kill, (pid, signal.SIGKILL))
    try:
        while not killer.finished.is_set():  # after the kill nothing more can be acknowledged
            try:
                _idle(page)
                decided = _decided(page)
                mask_id = _current_mask(page)
                status = rng.choice(["accepted", "rejected"])
                clicked.append(mask_id)
                if not clicked[1:]:
                    killer.start()  # the clock starts at the first click
                page.get_by_role("button", name="Accept" if status == "accepted" else "Reject").click(
                    timeout=5_000
                )
                _wait_for_count(page, decided + 1)
            except Exception:  # the server is gone: the page stops answering (Playwright's timeouts)
                if killer.finished.is_set():
                    return acknowledged, clicked
                raise
            acknowledged.append((mask_id, status))
        return acknowledged, clicked
    finally:
        killer.cancel()


def _wait_for_count(page: object, expected: int, seconds: float = 5.0) -> None:
    """Until the page shows ``expected`` decided masks; TimeoutError after ``seconds``."""
    deadline = time.monotonic() + seconds
    while _decided(page, timeout=1_000) != expected:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the page never showed {expected} decided masks")
        page.wait_for_timeout(50)


def test_killing_the_app_mid_curation_loses_no_acknowledged_decision(tmp_path: Path, browser: object) -> None:
    root = tmp_path / "project"
    tiny_project(root, n_images=20)
    proc, url = start_server(root)
    try:
        page = browser.new_page()
        page.goto(url + "/curate")
        page.get_by_role("button", name="Accept").wait_for(timeout=TIMEOUT)
        acknowledged, clicked = _click_until_killed(page, proc.pid, random.Random(0))
    finally:
        proc.kill()  # already dead unless the test failed before the kill
        proc.wait(timeout=20)
    assert proc.returncode == -signal.SIGKILL

    assert acknowledged, "no decision acknowledged before the kill: nothing was tested"
    with closing(sqlite3.connect(root / DB_NAME)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    project = Project(root)
    assert project.check() == []
    masks = {m["id"]: m for m in project.pseudo_masks()}
    history = project.edit_history()
    for mask_id, status in acknowledged:
        assert masks[mask_id]["status"] == status and masks[mask_id]["version"] == 2
        assert [e["after"]["status"] for e in history if e["mask_id"] == mask_id] == [status]
    # Nothing unclicked was changed; at most the one decision in flight was saved without being shown.
    assert {e["mask_id"] for e in history} <= set(clicked)
    assert len(acknowledged) <= len(history) <= len(acknowledged) + 1
    assert sum(m["version"] - 1 for m in masks.values()) == len(history)
