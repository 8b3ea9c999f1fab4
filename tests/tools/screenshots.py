"""Screenshots of every page of the app on a project, in headless Debian Chromium (Playwright).

    python -m tests.tools.screenshots --project projects/demo --out assets

Serves the app on the project (``wsseg demo --project DIR --train`` gives one with maps; the Evaluate
page also wants ``wsseg proposals`` and ``wsseg pseudo-masks`` on it), opens each page, waits until its
pictures have loaded, and writes ``screenshot-<page>.png``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from tests.app.helpers import CHROMIUM, CHROMIUM_ARGS, serve

PAGES = {
    "project": "",
    "data": "/data",
    "cams": "/cams",
    "proposals": "/proposals",
    "curate": "/curate",
    "evaluate": "/evaluate",
    "train": "/train",
    "learn": "/learn",
}


STATE = """() => [document.querySelectorAll('[data-testid]').length,
    document.querySelector("[data-testid='stApp']")?.getAttribute('data-test-script-state') === 'notRunning'
    && !document.querySelector("[data-testid='stSkeleton'], [data-testid='stSpinner']"),
    [...document.querySelectorAll('img')].every(e => e.complete)]"""


def _settled(page: object, quiet_ms: int = 1500, timeout_s: float = 180.0) -> None:
    """Until the page has shown the same number of elements for ``quiet_ms``, its script finished (the
    app's ``data-test-script-state``), no element still a loading placeholder (Streamlit's lazily
    loaded widgets) or spinner, and every picture loaded."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        count, idle, loaded = page.evaluate(STATE)
        if idle and loaded and last == count:
            return
        last = count if idle and loaded else None
        page.wait_for_timeout(quiet_ms)
    raise TimeoutError("the page did not settle")


def main() -> None:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("assets"))
    parser.add_argument("--height", type=int, default=1500, help="window height in pixels (default 1500)")
    parser.add_argument(
        "--pages", default=",".join(PAGES), help=f"comma-separated, of {', '.join(PAGES)} (default all)"
    )
    args = parser.parse_args()
    chosen = {name: PAGES[name] for name in args.pages.split(",")}
    args.out.mkdir(parents=True, exist_ok=True)
    with serve(args.project) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": args.height})
        # app.py first: a server whose first visit is a page's own URL serves pages/ without app.py.
        page.goto(url)
        page.locator("h1").first.wait_for(timeout=120_000)
        for name, path in chosen.items():
            page.goto(url + path)
            page.locator("h1").first.wait_for(timeout=120_000)
            _settled(page)
            page.screenshot(path=str(args.out / f"screenshot-{name}.png"))
            print(args.out / f"screenshot-{name}.png")
        browser.close()


if __name__ == "__main__":
    main()
