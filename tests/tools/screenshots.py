"""Screenshots of every page of the app on a project, in headless Debian Chromium (Playwright).

    python -m tests.tools.screenshots --project projects/demo --out assets

Serves the app on the project (``wsseg demo --project DIR --train`` gives one with maps), opens each
page, waits until its pictures have loaded, and writes ``screenshot-<page>.png``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tests.app.helpers import CHROMIUM, CHROMIUM_ARGS, serve

PAGES = {
    "project": "",
    "data": "/data",
    "cams": "/cams",
    "proposals": "/proposals",
    "curate": "/curate",
    "train": "/train",
    "learn": "/learn",
}


def main() -> None:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("assets"))
    parser.add_argument("--height", type=int, default=1500, help="window height in pixels (default 1500)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with serve(args.project) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": args.height})
        for name, path in PAGES.items():
            page.goto(url + path)
            page.locator("h1").first.wait_for(timeout=120_000)
            page.wait_for_timeout(1500)
            page.locator("[data-testid='stStatusWidget']").wait_for(state="detached", timeout=120_000)
            page.wait_for_function(
                "() => [...document.querySelectorAll('img')].every(e => e.complete)", timeout=60_000
            )
            page.wait_for_timeout(1000)
            page.screenshot(path=str(args.out / f"screenshot-{name}.png"))
            print(args.out / f"screenshot-{name}.png")
        browser.close()


if __name__ == "__main__":
    main()
