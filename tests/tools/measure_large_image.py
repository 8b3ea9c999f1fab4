"""Peak memory and time of the per-image stages on one large image (default 6000x6000), each stage a
``python -m wsseg`` command of its own, measured from outside (its resident set: ``ru_maxrss`` of the
finished child).

    python -m tests.tools.measure_large_image --side 6000 --work /tmp/large

Builds a project with the 6000x6000 photo (a smooth gradient with a few shapes: its PNG stays small)
and two ordinary 160x160 images, installs the shipped demo classifier (shapes classes), then runs
``peaks``, ``proposals`` and ``pseudo-masks`` one after another (one worker) and prints, per stage, its
exit status, wall time and peak resident set, and checks that every stored pseudo mask and proposal of
the large image has its stored size. Before images were bounded to ``WORKING_SIDE``, the proposals
stage on such an image held about 12 GB for 3 minutes and then died of a MemoryError (issue 17): its
200 masks alone were 200 x 36 MB of booleans.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from wsseg.data.coco import decode_rle
from wsseg.data.shapes import ShapesConfig, generate
from wsseg.demo.project import install_classifier
from wsseg.store.project import Project


def large_photo(side: int, seed: int = 0) -> np.ndarray:
    """side x side RGB: a smooth colour gradient with six filled shapes (discs and squares)."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, side, dtype=np.float32)
    image = np.empty((side, side, 3), np.uint8)
    for c in range(3):
        a, b = rng.uniform(30, 90, 2)
        image[:, :, c] = (50 + a * ramp[:, None] + b * ramp[None, :]).astype(np.uint8)
    for k in range(6):
        colour = tuple(int(v) for v in rng.integers(150, 255, 3))
        y, x = (int(v) for v in rng.integers(side // 8, side - side // 8, 2))
        r = int(side * rng.uniform(0.04, 0.09))
        if k % 2:
            cv2.rectangle(image, (x - r, y - r), (x + r, y + r), colour, -1)
        else:
            cv2.circle(image, (x, y), r, colour, -1)
    return image


def build(root: Path, side: int) -> Project:
    project = Project.create(root)
    project.add_classes(["disc", "square", "triangle", "star"])
    samples = [(f"shapes{k}.png", generate(ShapesConfig(), k).image, ("disc",)) for k in range(2)]
    samples.append(("large.png", large_photo(side), ("disc", "square")))
    for name, pixels, tags in samples:
        ok, data = cv2.imencode(
            ".png", np.ascontiguousarray(pixels[:, :, ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 1]
        )
        data = data.tobytes()
        project.add_image(
            name, data, pixels.shape[1], pixels.shape[0], hashlib.sha256(data).hexdigest(), tags
        )
    install_classifier(project)
    return project


#: Runs one command and prints its peak resident set: a fresh, small parent, so the child's high-water
#: mark does not start at this script's (a forked child counts its parent's pages until it execs).
_MEASURE = (
    "import resource, subprocess, sys; "
    "rc = subprocess.call(sys.argv[1:]); "
    "print('MAXRSS', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, rc)"
)


def run_stage(args: list[str]) -> dict[str, object]:
    """Run ``python -m wsseg <args>`` alone; its exit status, wall seconds, peak resident set (GB) and
    the last lines it printed."""
    start = time.perf_counter()
    command = [sys.executable, "-c", _MEASURE, sys.executable, "-m", "wsseg", *args]
    done = subprocess.run(command, capture_output=True, text=True)
    lines = (done.stdout + done.stderr).replace("\r", "\n").strip().splitlines()
    measured = next(line.split() for line in reversed(lines) if line.startswith("MAXRSS"))
    return {
        "rc": int(measured[2]),
        "seconds": round(time.perf_counter() - start, 1),
        "max_rss_gb": round(int(measured[1]) / 2**20, 2),
        "tail": [line for line in lines if not line.startswith("MAXRSS")][-2:],
    }


#: Options of each stage's command beyond --project (one worker: the memory of one image's work).
STAGE_OPTIONS = {"peaks": [], "proposals": ["--workers", "1"], "pseudo-masks": ["--workers", "1"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=6000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/wsseg-large-image"))
    parser.add_argument("--stages", default="peaks,proposals,pseudo-masks")
    args = parser.parse_args()
    root = args.work / f"project-{args.side}"
    project = Project(root) if Project.is_project(root) else build(root, args.side)
    report: dict[str, object] = {"side": args.side, "load_average": os.getloadavg()}
    for stage in args.stages.split(","):
        report[stage] = run_stage([stage, "--project", str(root), *STAGE_OPTIONS[stage]])
        print(stage, json.dumps(report[stage]), flush=True)
    large = next(r for r in project.images() if r.filename == "large.png")
    shapes = {
        "pseudo_masks": sorted(
            {decode_rle(m["rle"]).shape for m in project.pseudo_masks() if m["image_id"] == large.id}
        ),
    }
    run = project.latest_run("proposals")
    if run is not None:
        data = json.loads(project.artifact("proposals", run.id, large.id, ".json").read_text())
        shapes["proposals"] = [data["size"], data["working_size"], len(data["rles"])]
    report["large_image_results"] = shapes
    print(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
