"""The command line's measuring commands: ``wsseg bench`` and ``wsseg cams`` (``wsseg.cli`` adds them;
``stage`` is its lazy command factory)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

Stage = Callable[..., Callable[[argparse.Namespace], None]]


def add_bench(sub: argparse._SubParsersAction, stage: Stage, weights_help: str) -> None:
    """``wsseg bench``."""
    p = sub.add_parser(
        "bench",
        help="train and evaluate each built stage on a dataset; write report.json and report.md",
        description="Benchmark: trains and measures each stage built so far. --quick finishes in minutes and "
        "still trains for real; the full run is what the targets refer to.",
    )
    p.add_argument("--dataset", default="shapes", choices=["shapes", "nuclei", "camvid", "coco"])
    p.add_argument("--quick", action="store_true", help="small data and short training (a few minutes)")
    p.add_argument("--out", type=Path, default=Path("bench-out"), help="folder for report.json / report.md")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--data-root", type=Path, default=None, help="real datasets folder (default ../shared/data)"
    )
    p.add_argument(
        "--reliability",
        action="store_true",
        help="instead of training: hostile imports, killed and concurrent editors; counts what was lost",
    )
    p.add_argument(
        "--scale",
        action="store_true",
        help="instead of training: the proposals stage in 1 and 2 local workers and on a two-node Ray "
        "cluster on this machine; images per second, and each image checked against the one-process run",
    )
    p.add_argument(
        "--curation",
        action="store_true",
        help="a run of its own: Mask R-CNN on the pseudo masks before and after a simulated annotator "
        "reviews N masks in queue order and N at random (docs/benchmark.md)",
    )
    p.add_argument(
        "--project", type=Path, default=None, help="with --curation: start from this project (never written)"
    )
    p.add_argument(
        "--weights",
        default=None,
        help="pretrained start of the classifier and both Mask R-CNNs: " + weights_help + "; recorded in "
        "the report (default: from scratch)",
    )
    p.add_argument(
        "--backbone",
        default=None,
        help="with --weights: mobilenet_v2 (default, the network of ../shared/weights/), mobilenet_v3 or resnet50",
    )
    p.add_argument(
        "--frozen-backbone",
        action="store_true",
        help="with --weights: the classifier trains only its head on the weights' features",
    )
    p.add_argument(
        "--only",
        default=None,
        help="after the classifier, measure only these (comma-separated): cams, pseudo, speed, ple, maskrcnn "
        "(default all)",
    )
    p.set_defaults(func=stage("wsseg.bench.command"))


def add_cams(sub: argparse._SubParsersAction, stage: Stage, weights_help: str) -> None:
    """``wsseg cams``: the score card of the CAM methods (``wsseg.stages.score_cams``)."""
    p = sub.add_parser(
        "cams",
        help="score CAM methods (Grad-CAM, Score-CAM, ... and PRM's class response map) against the truth",
        description="For each method, on the project's classifier: pointing accuracy, peak precision, instance "
        "recall, mIoU of the map at its best threshold, mask mAP50 of the pseudo masks its peaks seed, and "
        "seconds per image; printed as a table and written as JSON to --out. With --image: every method's map "
        "of one photo (the project's classifier, or an ImageNet classifier with --weights) as pictures.",
    )
    p.add_argument(
        "--project", type=Path, default=None, help="the project: its score card, or its classifier"
    )
    p.add_argument(
        "--image", type=Path, default=None, help="instead of a score card: every method's map of this photo"
    )
    p.add_argument(
        "--arch", default="resnet50", help="with --weights: resnet18, resnet50, mobilenet_v2 or mobilenet_v3"
    )
    p.add_argument(
        "--weights",
        default=None,
        help="with --image: an ImageNet classifier's weights (" + weights_help + ")",
    )
    p.add_argument(
        "--class", dest="class_name", default=None, help="with --image: the class (default: the top-scoring)"
    )
    p.add_argument(
        "--methods",
        default="all",
        help="comma-separated: crm, gradcam, gradcam++, xgradcam, scorecam, layercam, eigencam, hirescam "
        "(default all)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="the score card's JSON file, or with --image the maps' folder (cams-out)",
    )
    p.add_argument("--split", default="val", help="image split, or all (default val)")
    p.add_argument("--images", type=int, default=50, help="at most this many images (default 50)")
    p.add_argument("--layer", default=None, help="target layer of the gradient methods (default: the last)")
    p.add_argument("--name", default="classifier", help="the classifier's run name (default classifier)")
    p.set_defaults(func=stage("wsseg.views.cam_compare"))
