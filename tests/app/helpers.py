"""Running the real app: headless with Streamlit's AppTest, or served by ``streamlit run`` for Chromium."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def open_page(project: Path, page: str | None = None) -> AppTest:
    """The app on ``project``, showing ``page`` (e.g. "pages/data.py"; None: the default page)."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["project_root"] = str(project)
    at.run()
    if page is not None:
        at.switch_page(page).run()
    return at


def captions(at: AppTest) -> str:
    return "\n".join(c.value for c in at.caption)


def image_urls(at: AppTest) -> list[str]:
    """The media URLs of the shown images (they change when the pictures' bytes change)."""
    return [img.url for element in at.get("image") for img in element.proto.imgs]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(project: Path, lesson: Path | None = None) -> tuple[subprocess.Popen, str]:
    """``wsseg app`` on ``project`` (and the Learn page on the lesson project ``lesson``) at 127.0.0.1 on
    a free port; returns the server process and its URL once ``/_stcore/health`` answers (the caller
    stops it)."""
    port = _free_port()
    env = dict(os.environ)
    if lesson is not None:
        env["WSSEG_LESSON"] = str(lesson)
    command = [sys.executable, "-m", "wsseg", "app", "--project", str(project), "--port", str(port)]
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            urllib.request.urlopen(url + "/_stcore/health", timeout=2)
            return proc, url
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                proc.wait()
                raise RuntimeError("the Streamlit server did not start") from None
            time.sleep(0.5)


@contextmanager
def serve(project: Path, lesson: Path | None = None) -> Iterator[str]:
    """``start_server``; yields its URL, and stops the server by its PID on exit."""
    proc, url = start_server(project, lesson)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def first_tagged(classes: list[str], tags: tuple[str, ...]) -> int:
    """The class the CAMs page opens on: the first of the project's classes the image is tagged with."""
    return next(k for k, c in enumerate(classes) if c in tags)


#: How long a browser test waits for the app before it fails (ms): a bound on failure, not a speed check.
WAIT = 120_000


IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"


def wait_idle(page: object, timeout: float = WAIT) -> None:
    """Until Streamlit has finished the current run and stays idle: its status widget gone and the app
    not running, twice 300 ms apart (``st.rerun`` starts a second run right after the first; a click
    made between the two can be lost)."""
    for _ in range(2):
        page.wait_for_timeout(300)
        page.locator("[data-testid='stStatusWidget']").wait_for(state="detached", timeout=timeout)
        page.locator(IDLE).wait_for(timeout=timeout)


def no_exception(page: object) -> None:
    """The page shows no exception and no traceback."""
    shown = [e.inner_text() for e in page.locator("[data-testid='stException']").all()]
    assert not shown, shown
    assert page.get_by_text("Traceback").count() == 0
