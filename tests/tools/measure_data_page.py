"""How responsive the Data page stays on a large project: server-side time of its runs, in AppTest.

    python -m tests.tools.measure_data_page [--images 5000] [--out /tmp/wsseg-5k]

Builds (once) a project of N small distinct PNG images (48x48, 1 to 3 random tags of 4 classes)
directly through the store, then times, with Streamlit's AppTest (the real page script, no
browser), the page's first render, a page change, a tag filter, 96 per page, and the untagged
filter. Each figure is the median of 5 runs in ms; thumbnails are cached after their first read,
as in the app. Prints one line per action.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
from streamlit.testing.v1 import AppTest

from wsseg.data.images import content_hash
from wsseg.store.project import Project

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ("disc", "square", "triangle", "star")


def build(root: Path, n: int) -> Project:
    project = Project.create(root, name=f"{n} images")
    have = project.count_images()
    if have >= n:
        return project
    rng = np.random.default_rng(0)
    project.add_classes(CLASSES)
    for k in range(have, n):
        image = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
        ok, data = cv2.imencode(".png", image)
        data = data.tobytes()
        tags = [] if k % 10 == 0 else list(rng.choice(CLASSES, rng.integers(1, 4), replace=False))
        project.add_image(f"img_{k:05d}.png", data, 48, 48, content_hash(data), tags)
    return project


def timed(at: AppTest, action) -> float:
    start = time.perf_counter()
    action(at).run()
    if at.exception:
        raise RuntimeError(at.exception[0].message)
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--out", type=Path, default=Path("/tmp/wsseg-data-page"))
    args = parser.parse_args()
    start = time.perf_counter()
    project = build(args.out, args.images)
    print(
        f"project: {project.count_images()} images at {args.out} ({time.perf_counter() - start:.0f} s to build)"
    )

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.session_state["project_root"] = str(args.out)
    at.run()
    first = timed(at, lambda a: a.switch_page("pages/data.py"))
    print(f"first render of the Data page (thumbnails read from disk): {first:.0f} ms")
    last_page = -(-args.images // 24)
    actions = {
        "same page again (cached thumbnails)": lambda a: a,
        f"go to page {last_page // 2}": lambda a: a.number_input(key="data_page").set_value(last_page // 2),
        "filter by tag 'star'": lambda a: a.selectbox(key="data_tag").select("star"),
        "96 per page": lambda a: a.selectbox(key="data_per_page").select(96),
        "filter (untagged)": lambda a: a.selectbox(key="data_tag").select("(untagged)"),
    }
    for name, action in actions.items():
        times = [timed(at, action)]
        times += [timed(at, lambda a: a) for _ in range(4)]  # the same view again
        print(f"{name}: first {times[0]:.0f} ms, median of 5 {statistics.median(times):.0f} ms")


if __name__ == "__main__":
    main()
