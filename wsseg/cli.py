"""Command line: ``python -m wsseg COMMAND`` (also installed as ``wsseg``).

Each command is a small function taking the parsed arguments; the work itself lives in the stage modules.
Errors meant for the user (``WssegError``) are printed as one line and exit with status 2, never as a
traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from wsseg.cli_measure import add_bench, add_cams
from wsseg.errors import WssegError

DEFAULT_DEMO = Path("projects/demo")
WEIGHTS_HELP = (
    "a weights file, or a torchvision weight name (imagenet = DEFAULT, IMAGENET1K_V1, ...) whose file is "
    "already in torch's cache (wsseg never downloads)"
)


def _stage(module: str, function: str = "run_from_args") -> Callable[[argparse.Namespace], None]:
    """A command whose work is ``function`` of a module (a stage's ``run_from_args``), imported only when
    it runs."""

    def run(args: argparse.Namespace) -> None:
        getattr(importlib.import_module(module), function)(args)

    return run


def _add_job(p: argparse.ArgumentParser) -> None:
    help = "report progress and status to this row of the project's jobs table (set by the app)"
    p.add_argument("--job", type=int, default=None, help=help)


def _add_run_options(p: argparse.ArgumentParser, default_name: str) -> None:
    """The options every training command shares: seed, run name, resume, replace, workers, job row."""
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default=default_name, help="run name: checkpoints/<name>/ (must be new)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint of --name")
    p.add_argument("--replace", action="store_true", help="train over the existing run --name")
    p.add_argument("--workers", type=int, default=0, help="data loader worker processes")
    _add_device(p)
    _add_job(p)


def _add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device",
        default=None,
        help="auto (default: the GPU when torch sees one, else the CPU), cpu, cuda or cuda:N; on a GPU "
        "training runs in mixed precision from pinned memory (also $WSSEG_DEVICE)",
    )


def _add_train_classifier(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-classifier",
        help="train the classifier with class response maps on the project's tags",
        description="Train the tag classifier (backbone + 1x1 conv to class response maps, peak stimulation). "
        "Checkpoints every epoch to the project's checkpoints/; --resume continues a killed run. "
        "Runs unchanged under torchrun --nproc_per_node=N.",
    )
    p.add_argument("--project", type=Path, required=True, help="project folder")
    p.add_argument(
        "--backbone",
        default="small",
        help="small | resnet18 | resnet50 | mobilenet_v3 | mobilenet_v2 (default small)",
    )
    p.add_argument("--weights", default=None, help=WEIGHTS_HELP)
    help = "train only the head on the --weights backbone's features (better peaks from few photos)"
    p.add_argument("--frozen-backbone", action="store_true", help=help)
    p.add_argument(
        "--dilations",
        default="1",
        help="dilations of the small backbone's last layers, comma-separated; receptive field "
        "41 + 16 * their sum pixels: keep it a little above your largest object (default 1: 57 px)",
    )
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument(
        "--pooling",
        choices=["average", "peaks"],
        default="average",
        help="class score while training: 'average' (global average pooling, default: it learnt faster and "
        "localised no worse on shapes, see docs/benchmark.md) or 'peaks' (PRM's peak stimulation layer); "
        "peaks are found at inference either way",
    )
    p.add_argument(
        "--augment",
        default="flips",
        help="comma-separated: flips (flips and 90-degree turns), hflip (horizontal flips only), colour "
        "(channel permutation and inversion, for data whose classes are not their colour), none "
        "(default: flips)",
    )
    p.add_argument("--size", type=int, default=None, help="resize to SIZE x SIZE (needed when sizes differ)")
    _add_run_options(p, "classifier")
    p.set_defaults(func=_stage("wsseg.stages.train_classifier"))


def _number_or_off(text: str) -> float | None:
    """A number, or None for 'off' (a filter that is not applied)."""
    try:
        return None if text.strip().lower() == "off" else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'off', got {text!r}") from None


def _add_peaks(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "peaks",
        help="write CRMs, peaks and peak response maps of every image to the project",
        description="Run the trained classifier over the project's images; store CRMs and PRMs as .npz under "
        "artifacts/peaks/<run>/ and the peaks in the database. An option left out takes the measured "
        "inference recipe's value (wsseg/stages/recipes.py, INFERENCE_PEAKS; docs/benchmark.md); 'off' "
        "turns a filter off.",
    )
    p.add_argument("--project", type=Path, required=True)
    p.add_argument("--name", default="classifier", help="classifier run name (checkpoints/<name>/)")
    # No defaults here: ``wsseg.stages.make_peaks.inference_from_args`` fills in the recipe's (so that
    # ``wsseg --help`` starts without importing torch).
    recipe = argparse.SUPPRESS
    p.add_argument(
        "--prm",
        dest="method",
        default=recipe,
        help="excitation (PRM's peak backpropagation) | gradient (input gradient, as WISE)",
    )
    for flag, text in (
        ("--peak-threshold", "ignore peaks below this value"),
        ("--relative-threshold", "ignore peaks below this fraction of their class map's maximum"),
        ("--smooth", "blur the CRMs by this std (in map cells) first"),
        ("--class-threshold", "ignore classes whose score (logit) is below this"),
    ):
        p.add_argument(flag, type=_number_or_off, default=recipe, help=f"{text}, or off")
    p.add_argument(
        "--scale",
        type=float,
        default=recipe,
        help="enlarge each image this many times before the classifier (2 finds more of many small "
        "touching objects, such as nuclei)",
    )
    p.add_argument("--shard", default="0/1", help="i/n: process only the i-th of n parts of the images")
    p.add_argument("--run", type=int, default=None, help="add to this existing peaks run (for shards)")
    _add_resume(p, "peaks")
    _add_device(p)
    p.add_argument(
        "--workers", type=int, default=1, help="worker processes, each with the model (default 1: this one)"
    )
    _add_cluster(p)
    p.add_argument("--split", default=None, help="only the images of this split (default: all)")
    _add_job(p)
    p.set_defaults(func=_stage("wsseg.stages.make_peaks"))


def _add_train_ple(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-ple",
        help="train the pixel-label estimator (semantic segmentation from tags)",
        description="Train a fully convolutional network p(z|x) from the project's tags with the pixel-label "
        "estimator, the neighbourhood loss and the classification loss (--full: the same network on the "
        "ground-truth pixel labels, the upper bound). Checkpoints every epoch; --resume continues a killed "
        "run; runs unchanged under torchrun. --predict then writes a label map of every image to "
        "artifacts/ple/run-<id>/ and prints the mIoU where the project has ground truth.",
    )
    p.add_argument("--project", type=Path, required=True, help="project folder")
    p.add_argument("--full", action="store_true", help="train on ground-truth pixel labels (baseline)")
    p.add_argument("--no-background", action="store_true", help="the data has no background label")
    p.add_argument(
        "--backbone", default="small", help="small | resnet18 | resnet50 | mobilenet_v3 | mobilenet_v2"
    )
    p.add_argument("--weights", default=None, help=WEIGHTS_HELP)
    p.add_argument("--init", default=None, help="start the backbone from this trained classifier (run name)")
    p.add_argument(
        "--labels-from",
        default=None,
        metavar="RUN",
        help="second round (self-training, tags only): train on the tag-masked, CRF-refined predictions "
        "of this trained estimator on the training images",
    )
    p.add_argument(
        "--confidence",
        type=float,
        default=0.0,
        help="with --labels-from: ignore pixels whose refined probability is below this (default 0: none)",
    )
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--share", type=float, default=0.005, help="least fraction of pixels a tagged class wins")
    p.add_argument("--neighbourhood-weight", type=float, default=10.0, help="(default 10, measured)")
    p.add_argument("--classification-weight", type=float, default=1.0)
    p.add_argument("--augment", default="flips", help="flips, hflip, colour (comma-separated) or none")
    p.add_argument("--size", type=int, default=None, help="resize images to SIZE x SIZE")
    _add_run_options(p, "ple")
    p.add_argument("--predict", action="store_true", help="write every image's label map afterwards")
    p.add_argument("--crf", action="store_true", help="refine the written predictions with the dense CRF")
    p.set_defaults(func=_stage("wsseg.stages.train_ple"))


def _add_sharding(p: argparse.ArgumentParser, stage: str) -> None:
    from wsseg.stages.pool import default_workers

    p.add_argument("--split", default=None, help="only the images of this split (default: all)")
    p.add_argument("--shard", default="0/1", help="i/n: process only the i-th of n parts of the images")
    p.add_argument("--run", type=int, default=None, help=f"add to this existing {stage} run (for shards)")
    _add_resume(p, stage)
    p.add_argument(
        "--workers", type=int, default=default_workers(), help="worker processes (default: cores, <= 4)"
    )
    _add_cluster(p)
    _add_job(p)


def _add_cluster(p: argparse.ArgumentParser) -> None:
    from wsseg.stages.pool import CLUSTER_ENV

    p.add_argument(
        "--cluster",
        default=None,
        metavar="ADDRESS",
        help=f"run the images on the Ray cluster whose head is at ADDRESS (host:port, or auto for the one "
        f"started on this machine; default: ${CLUSTER_ENV} when set, else local processes). Every node "
        "needs wsseg and sees the project folder at the same path; only this process writes the database",
    )


def _add_resume(p: argparse.ArgumentParser, stage: str) -> None:
    p.add_argument(
        "--resume",
        type=int,
        default=None,
        metavar="RUN",
        help=f"continue the {stage} run RUN (stopped, failed or killed) with its own settings: the images it "
        "committed are kept, the others are worked on",
    )


def _add_proposals(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "proposals",
        help="write class-agnostic mask proposals (selective search) of every image to the project",
        description="Selective-search mask proposals per image, stored as RLE JSON under "
        "artifacts/proposals/<run>/.",
    )
    p.add_argument("--project", type=Path, required=True)
    p.add_argument("--max-proposals", type=int, default=None, help="proposals kept per image (default 200)")
    p.add_argument("--scales", default=None, help="comma-separated Felzenszwalb scales (default 50,150,400)")
    p.add_argument(
        "--colour-spaces", default=None, help="comma-separated, of rgb, hsv, lab (default rgb,lab)"
    )
    _add_sharding(p, "proposals")
    p.set_defaults(func=_stage("wsseg.stages.make_proposals"))


def _add_pseudo_masks(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pseudo-masks",
        help="choose one proposal per peak (PRM retrieval or WISE) and store the pseudo masks",
        description="Reads a peaks run and a proposals run (the newest by default) and stores one pseudo mask "
        "per peak, after mask NMS, with its lineage; --export writes the run as COCO JSON.",
    )
    p.add_argument("--project", type=Path, required=True)
    p.add_argument("--strategy", choices=["prm", "wise"], default=None, help="default prm")
    p.add_argument("--alpha", type=float, default=None, help="weight of the PRM inside the proposal")
    p.add_argument("--beta", type=float, default=None, help="weight of the background pixels inside")
    p.add_argument("--bg", type=float, default=None, help="background: CRM below bg x its mean")
    p.add_argument("--nms-iou", type=float, default=None, help="mask NMS IoU (0: no NMS; default 0.3)")
    p.add_argument("--confidence", choices=["retrieval", "peak"], default=None, help="what ranks the masks")
    p.add_argument("--peaks-run", type=int, default=None, help="peaks run to read (default: newest)")
    p.add_argument("--proposals-run", type=int, default=None, help="proposals run to read (default: newest)")
    p.add_argument("--all-classes", action="store_true", help="use peaks of untagged classes too")
    p.add_argument("--export", type=Path, default=None, help="also write the run's masks as COCO JSON here")
    _add_sharding(p, "pseudo-masks")
    p.set_defaults(func=_stage("wsseg.stages.make_pseudo_masks"))


def _add_train_maskrcnn(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-maskrcnn",
        help="train Mask R-CNN on pseudo masks (or the true masks: the fully-supervised upper bound)",
        description="Train torchvision's Mask R-CNN (MobileNetV3-FPN from scratch by default) on the "
        "training split's instances from a COCO JSON (--coco), the project's ground truth (--source truth) "
        "or its stored pseudo masks (--source pseudo). Checkpoints every epoch; --resume continues a "
        "killed run. Runs unchanged under torchrun --nproc_per_node=N.",
    )
    p.add_argument("--project", type=Path, required=True, help="project folder")
    p.add_argument("--coco", type=Path, default=None, help="COCO instance JSON of the training masks")
    p.add_argument("--source", choices=["pseudo", "truth"], help="instead of --coco (pseudo: newest run's)")
    p.add_argument(
        "--backbone",
        default=None,
        choices=["mobilenet_v3", "mobilenet_v2", "resnet50", "small", "maskrcnn_resnet50_fpn_v2"],
        help="default mobilenet_v3; small with --init; maskrcnn_resnet50_fpn_v2 is torchvision's whole COCO "
        "detector (--weights COCO_V1 from torch's cache, or its file)",
    )
    p.add_argument("--weights", default=None, help=WEIGHTS_HELP)
    p.add_argument(
        "--init",
        default=None,
        metavar="CLASSIFIER",
        help="start the small backbone from this trained classifier's layers (its width; learnt from tags only)",
    )
    p.add_argument("--image-size", type=int, default=160, help="shorter image side the model works at")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-3, help="one-cycle peak of AdamW (default 2e-3)")
    p.add_argument(
        "--augment", default="flips", help="comma-separated: flips, hflip, colour, none (default flips)"
    )
    _add_run_options(p, "maskrcnn")
    p.set_defaults(func=_stage("wsseg.stages.train_maskrcnn"))


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score a trained model against the project's ground truth (or its tags); print, write JSON",
        description="Mask mAP at IoU 0.25/0.5/0.75 (per class), pointing accuracy and counting error of a "
        "trained Mask R-CNN on a split (a project without ground truth: how its classes agree with the "
        "tags), or the mIoU of a pixel-label estimator (--stage ple); predictions are stored in the project.",
    )
    p.add_argument("--project", type=Path, required=True)
    p.add_argument(
        "--stage", default="maskrcnn", help="maskrcnn (mask mAP, pointing, counting) or ple (mIoU)"
    )
    p.add_argument(
        "--name", default=None, help="the model's run name: checkpoints/<name>/ (default: --stage)"
    )
    p.add_argument(
        "--split", default=None, help="image split, or all (default: val when it has truth, else all)"
    )
    p.add_argument(
        "--score-threshold", type=float, default=0.5, help="instances kept for counting (default 0.5)"
    )
    p.add_argument("--out", type=Path, default=None, help="also write the metrics JSON here")
    p.add_argument(
        "--predictions",
        type=Path,
        default=None,
        help="score this COCO results file (from any tool; image and category ids as wsseg export gives "
        "them) instead of a trained model",
    )
    _add_device(p)
    _add_job(p)
    p.set_defaults(func=_stage("wsseg.stages.evaluate"))

    text = "run the steps a pipeline job's row lists, each as a job of its own, one after another"
    p = sub.add_parser("pipeline", help=text + " (the app's Project page starts it)", description=text)
    p.add_argument("--project", type=Path, required=True)
    p.add_argument("--job", type=int, required=True, help="the pipeline job's row")
    p.set_defaults(func=_stage("wsseg.jobs.pipeline"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wsseg",
        description="Weakly-supervised segmentation from image-level tags: see every step, correct, retrain.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "demo",
        help="create the demo project (synthetic shapes) and print where it is",
        description="Generate the synthetic 'shapes' dataset and import it into a project folder. "
        "Does nothing when the project already holds images.",
    )
    p.add_argument(
        "--project", type=Path, default=DEFAULT_DEMO, help=f"project folder (default {DEFAULT_DEMO})"
    )
    p.add_argument("--images", type=int, default=200, help="number of images (default 200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--no-checkpoint",
        action="store_true",
        help="only the images: no shipped classifier (assets/demo-classifier.pt), peaks, proposals or pseudo masks",
    )
    p.add_argument(
        "--train",
        action="store_true",
        help="also train a small classifier (about a minute; weak maps, for exploring the app) and compute peaks",
    )
    p.add_argument("--epochs", type=int, default=10, help="epochs of --train (default 10)")
    p.set_defaults(func=_stage("wsseg.demo.command", "run_demo"))

    p = sub.add_parser(
        "demo-checkpoint",
        help="train the demo classifier shipped in assets/ (the full shapes benchmark's recipe)",
        description="Train the classifier that `wsseg demo` installs into the demo project, on fresh "
        "shapes images with the full benchmark's recipe, and save it (without optimiser state).",
    )
    p.add_argument("--out", type=Path, default=Path("assets/demo-classifier.pt"))
    p.add_argument(
        "--models",
        action="store_true",
        help="instead: the Learn page's small Mask R-CNN and pixel-label estimator, trained on the shipped "
        "classifier's pseudo masks and tags, written beside --out with their held-out scores",
    )
    p.add_argument(
        "--images",
        type=int,
        default=None,
        help="training images (default: the recipe's; --models: the demo plan's)",
    )
    p.add_argument("--epochs", type=int, default=None, help="default: the full shapes benchmark's")
    p.add_argument("--seed", type=int, default=1, help="generator seed of the training images (demo: 0)")
    p.set_defaults(func=_stage("wsseg.demo.command", "run_demo_checkpoint"))

    p = sub.add_parser(
        "import",
        help="import tagged images (a tagged folder or zip, COCO, PASCAL VOC, a folder per class)",
        description="SOURCE is a folder with images/ and tags.csv (filename,tags; tags separated by ';'), "
        "a .zip of such a folder, a COCO instance JSON (its images are found in the usual places beside "
        "it, or given with --images), a PASCAL VOC folder (JPEGImages/ with its masks, annotations and "
        "ImageSets/Segmentation lists) or a folder per class (<class>/<image>, or <split>/<class>/<image>). "
        "Masks are kept for evaluation only; the source's splits, image ids, file names and category ids "
        "are kept. The project is created if new. Bad files are reported by name and skipped; an import "
        "that stores nothing new is an error.",
    )
    p.add_argument("source", type=Path)
    p.add_argument("--project", type=Path, required=True)
    p.add_argument("--images", type=Path, default=None, help="the image folder of a COCO JSON")
    p.add_argument("--split", default=None, help="split of every image (default: the source's, else train)")
    p.set_defaults(func=_stage("wsseg.store.importer"))

    p = sub.add_parser(
        "export",
        help="export pseudo masks, curated masks, predictions or label maps as COCO or VOC",
        description="Write what the project made: --what pseudo (a pseudo-masks run, all but rejected), "
        "curated (accepted or edited), predictions (an evaluate run's, as a COCO results list) or labels "
        "(the estimator's label maps). COCO keeps imported images' ids and file names and the source's "
        "category ids; VOC is a complete folder that imports back into wsseg.",
    )
    p.add_argument("--project", type=Path, required=True)
    p.add_argument("--what", required=True, help="pseudo, curated, predictions or labels")
    p.add_argument("--format", default="coco", help="coco (a .json file) or voc (a folder); default coco")
    p.add_argument("--out", type=Path, required=True, help="the .json file (coco) or the folder (voc)")
    p.add_argument("--run", type=int, default=None, help="the run to export (default: the newest finished)")
    p.add_argument("--include-proposed", action="store_true", help="curated: also the masks still proposed")
    p.set_defaults(func=_stage("wsseg.curation.export"))

    p = sub.add_parser(
        "app",
        help="serve the Streamlit app (needs pip install 'wsseg[app]')",
        description="Serve the installed app (app.py, pages/, its .streamlit/config.toml) until stopped. "
        f"It opens --project, else $WSSEG_PROJECT, else {DEFAULT_DEMO} (the demo, made on first start).",
    )
    p.add_argument("--project", type=Path, default=None, help="project folder the app opens first")
    p.add_argument("--port", type=int, default=8501, help="default 8501")
    p.add_argument("--address", default="127.0.0.1", help="default 127.0.0.1; 0.0.0.0 serves other machines")
    p.set_defaults(func=_stage("wsseg.views.serve"))

    _add_train_classifier(sub)
    _add_peaks(sub)
    _add_train_ple(sub)
    _add_proposals(sub)
    _add_pseudo_masks(sub)
    _add_train_maskrcnn(sub)
    _add_evaluate(sub)
    add_bench(sub, _stage, WEIGHTS_HELP)
    add_cams(sub, _stage, WEIGHTS_HELP)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], None] = args.func
    stack = contextlib.ExitStack()
    device = getattr(args, "device", None)
    try:
        if device is not None:
            from wsseg.training.device import device_option

            stack.enter_context(device_option(device))
        if getattr(args, "job", None) is not None:
            from wsseg.jobs.runner import job_image_progress, job_progress, run_as_job

            args.make_progress = functools.partial(job_progress, args)
            args.make_image_progress = functools.partial(job_image_progress, args)
            run_as_job(args.project, args.job, lambda: func(args))
        else:
            func(args)
    except WssegError as error:
        print(f"wsseg {args.command}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"wsseg {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        stack.close()
    return 0
