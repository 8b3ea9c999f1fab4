"""``wsseg demo`` and ``wsseg demo-checkpoint``: build the demo project; make the shipped demo models."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from wsseg.demo.models import DemoModelsPlan, make_demo_models
from wsseg.demo.project import (
    DEMO_CHECKPOINT,
    build_demo,
    create_demo_project,
    make_demo_checkpoint,
    train_demo_classifier,
)
from wsseg.progress import image_bar
from wsseg.training.engine import tqdm_callback


def run_demo(args: argparse.Namespace) -> None:
    """``wsseg demo``: the demo project, its shipped classifier, peaks, proposals and pseudo masks."""
    project = create_demo_project(args.project, n_images=args.images, seed=args.seed)
    print(f"demo project ready: {project.root.resolve()} ({project.count_images()} images)")
    if args.no_checkpoint and not args.train:
        return
    if args.train:
        run_id = train_demo_classifier(project, args.epochs, tqdm_callback("demo classifier"))
        print(f"demo classifier trained and peaks computed (run {run_id}): see the CAMs and peaks page")
    made = build_demo(project, bar=image_bar)
    if "peaks" in made:
        print(
            f"shipped demo classifier installed ({DEMO_CHECKPOINT.name}), peaks computed (run {made['peaks']})"
        )
    elif project.latest_run("peaks") is None:
        print(f"no shipped demo classifier at {DEMO_CHECKPOINT}; train one with --train")
    if made.keys() & {"proposals", "pseudo_masks"}:
        print("proposals and pseudo masks made: every page of the app has content")


def run_demo_checkpoint(args: argparse.Namespace) -> None:
    """``wsseg demo-checkpoint``: train the shipped demo classifier (or, with --models, the demo models)."""
    if args.models:
        plan = DemoModelsPlan(images=args.images or DemoModelsPlan.images)
        with tempfile.TemporaryDirectory() as work:
            report = make_demo_models(Path(work), plan, args.out.parent)
        print(f"demo Mask R-CNN and pixel-label estimator written to {args.out.parent}: {report}")
        return
    with tempfile.TemporaryDirectory() as work:
        metrics = make_demo_checkpoint(args.out, Path(work) / "project", args.images, args.epochs, args.seed)
    print(f"demo checkpoint written to {args.out} ({metrics})")
