"""``wsseg bench``: train and measure every built stage on one dataset; write report.json and report.md.

The benchmark goes through the product's own path: the data are written as tagged folders (with their
ground truth as COCO JSON, used only for evaluation), imported into a fresh project, and each stage
runs through the same functions as the command line. A key appears in the report only when its stage
ran; nothing is estimated or copied from an earlier run.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wsseg.bench.data import BenchSplit, dataset_splits
from wsseg.bench.maskrcnn import MaskRCNNPlan, bench_maskrcnn, classifier_start, maskrcnn_plan
from wsseg.bench.timing import Laps
from wsseg.data.tagged_folder import write_tagged_folder
from wsseg.errors import BadInputError
from wsseg.fileio import write_json
from wsseg.models.classifier import ClassifierConfig
from wsseg.models.peaks import PeakConfig
from wsseg.stages.evaluate_classifier import INFERENCE_PEAKS, evaluate_classifier
from wsseg.stages.train_classifier import load_classifier, train_classifier
from wsseg.store.importer import ground_truth, import_source
from wsseg.store.project import Project
from wsseg.training.datasets import Augment
from wsseg.training.engine import TrainConfig, tqdm_callback


@dataclass(frozen=True)
class BenchPlan:
    """Sizes and schedule of one benchmark run. ``quick`` finishes in minutes on 2 CPU cores."""

    train_images: int
    val_images: int
    classifier: ClassifierConfig
    train: TrainConfig
    size: int | None = None
    augment: Augment = Augment(flips=True, hflip=False, colour=True)
    """Both shapes (random colours) and nuclei (stains of several colours) are colour-agnostic."""
    ple: bool = False
    """Also run the pixel-label estimator's benchmark (``wsseg.bench.ple``; shapes and camvid)."""
    maskrcnn: MaskRCNNPlan | None = None
    """None: ``wsseg.bench.maskrcnn.maskrcnn_plan`` for the run."""
    pseudo_every: int = 1
    """Peaks, proposals and pseudo masks run on every n-th training image (the weak Mask R-CNN's data)."""
    peak_scale: float = 1.0
    """The inference peaks' enlargement (``InferencePeaks.scale``): 2 on nuclei."""
    pseudo_variant: str = "prm_peak_inside"
    """The row of ``wsseg.bench.pseudo.VARIANTS`` whose pseudo masks the weak Mask R-CNN learns from."""
    maskrcnn_epochs: int | None = None
    """Both Mask R-CNNs' epochs (None: ``maskrcnn_plan``'s)."""


def plan_for(dataset: str, quick: bool, num_classes: int, seed: int) -> BenchPlan:
    """The benchmark's recipe for ``dataset`` (docs/benchmark.md says what was tried and why this).

    The classifier trains with global average pooling (plain CAM) and finds peaks at inference: on
    shapes, training through the peak stimulation layer reached 0.76 tag mAP where global pooling
    reached 0.94 with the same steps, and its peaks were no better.
    """
    classifier = ClassifierConfig(
        num_classes=num_classes, backbone="small", peak_stimulation=False, peaks=PeakConfig()
    )
    ple = dataset in ("shapes", "camvid")
    # Nuclei: peaks on tiles enlarged twice (twice the nuclei found, same precision) and WISE's choice
    # (the most object-like proposal holding the PRM's argmax): pseudo-mask mAP50 0.32 against PRM
    # retrieval's 0.15 (docs/benchmark.md, "Nuclei").
    nuclei = {"peak_scale": 2.0, "pseudo_variant": "wise"} if dataset == "nuclei" else {}
    if quick:
        # Under 5 minutes on 2 CPU cores, every stage trained and measured for real (a small scale:
        # its figures show the pipeline works, not what the full schedule reaches).
        # The classifier gets most of the budget: from scratch it learns nothing measurable before
        # a few hundred steps (500 images x 10 epochs stayed at chance, tag mAP 0.50).
        return BenchPlan(
            800,
            100,
            classifier,
            TrainConfig(epochs=15, batch_size=32, lr=3e-3, seed=seed),
            ple=ple,
            pseudo_every=8,
            **nuclei,
        )
    if dataset == "shapes":
        # 46 epochs: twice the steps of the first recipe; the 57 px backbone kept improving to 69
        # (peak precision 0.75 -> 0.85 at the default threshold) but 69 costs ~40 min on 2 CPU cores.
        # Pseudo masks on every 2nd image: the 1,500 the Mask R-CNN trainings use (docs/benchmark.md,
        # "The full run's budget").
        return BenchPlan(
            3000,
            300,
            classifier,
            TrainConfig(epochs=46, batch_size=32, lr=3e-3, seed=seed),
            ple=ple,
            pseudo_every=2,
        )
    # Every tile or crop. Nuclei: Mask R-CNN 8 epochs (~540 steps, as on shapes); at 3 (201 steps)
    # the upper bound was at 0.26.
    return BenchPlan(
        100_000,
        100_000,
        classifier,
        TrainConfig(epochs=40, batch_size=32, lr=3e-3, seed=seed),
        ple=ple,
        maskrcnn_epochs=8 if dataset == "nuclei" else None,
        **nuclei,
    )


def _write_split(folder: Path, split: BenchSplit, limit: int) -> int:
    """Write up to ``limit`` samples as a tagged folder with ground truth; return how many."""
    from wsseg.data.coco import write_coco

    images: list[dict[str, Any]] = []
    instances: list[tuple[np.ndarray, list[int]]] = []

    def items() -> Iterator[tuple[str, np.ndarray, tuple[str, ...]]]:
        for k, sample in enumerate(_take(split.samples, limit)):
            name = f"{split.name}_{k:05d}.png"
            images.append(
                {
                    "id": k + 1,
                    "file_name": name,
                    "width": sample.image.shape[1],
                    "height": sample.image.shape[0],
                }
            )
            instances.append((sample.masks, list(sample.labels)))
            yield name, sample.image, sample.tags

    write_tagged_folder(folder, items())
    write_coco(folder / "annotations.json", images, split.classes, instances)
    return len(images)


def _take(samples: Iterable[Any], limit: int) -> Iterator[Any]:
    for k, sample in enumerate(samples):
        if k >= limit:
            return
        yield sample


def bench_project(
    work: Path, dataset: str, train_split: BenchSplit, val_split: BenchSplit, plan: BenchPlan
) -> tuple[Project, dict[str, Any]]:
    """A fresh project ``work/project`` with the plan's first images of both splits imported (through
    tagged folders under ``work/data``, their ground truth as COCO); returns it and the report's
    ``sizes`` section."""
    project = Project.create(work / "project", name=f"bench-{dataset}")
    n_train = _write_split(work / "data" / "train", train_split, plan.train_images)
    n_val = _write_split(work / "data" / "val", val_split, plan.val_images)
    import_source(project, work / "data" / "train", split="train")
    import_source(project, work / "data" / "val", split="val")
    return project, {"train_images": n_train, "val_images": n_val, "classes": list(project.classes())}


def train_bench_classifier(project: Project, plan: BenchPlan) -> None:
    """Train the plan's classifier on the project's training split as ``checkpoints/classifier``."""
    train_classifier(
        project,
        plan.classifier,
        plan.train,
        name="classifier",
        size=plan.size,
        augment=plan.augment,
        callback=tqdm_callback("classifier"),
    )


def run_bench(
    dataset: str,
    quick: bool,
    out: Path,
    seed: int = 0,
    data_root: Path | None = None,
    plan: BenchPlan | None = None,
) -> dict[str, Any]:
    """Run the benchmark; write ``out/report.json`` and ``out/report.md``; return the report.

    ``plan`` replaces the recipe of ``plan_for`` (the tests use a tiny one)."""
    out = Path(out)
    work = out / "work"
    shutil.rmtree(work, ignore_errors=True)
    laps = Laps()
    report: dict[str, Any] = {
        "dataset": dataset,
        "quick": quick,
        "seed": seed,
        "versions": _versions(),
    }

    laps.start()
    train_split, val_split = dataset_splits(dataset, seed, data_root)
    plan = plan or plan_for(dataset, quick, len(train_split.classes), seed)
    project, report["sizes"] = bench_project(work, dataset, train_split, val_split, plan)
    laps.lap("data")
    write_report(out, report, laps, complete=False)
    report["plan"] = {
        "classifier": asdict(plan.classifier),
        "train": asdict(plan.train),
        "size": plan.size,
        "augment": asdict(plan.augment),
        "peak_scale": plan.peak_scale,
        "pseudo_variant": plan.pseudo_variant,
    }

    laps.start()
    train_bench_classifier(project, plan)
    laps.lap("classifier_train")
    write_report(out, report, laps, complete=False)

    laps.start()
    model, classes, _ = load_classifier(project, "classifier")
    inference = replace(INFERENCE_PEAKS, scale=plan.peak_scale)
    report["classifier"] = evaluate_classifier(
        project, model, classes, split="val", size=plan.size, inference=inference
    )
    laps.lap("classifier_eval")
    write_report(out, report, laps, complete=False)

    truth = ground_truth(project)
    instances = truth is not None and any(truth.instances.values())  # camvid has none: semantic only
    if instances:
        laps.start()
        from wsseg.bench.pseudo import bench_pseudo_masks, variant_config

        shard = (0, plan.pseudo_every)
        report.update(
            bench_pseudo_masks(
                project,
                model,
                plan.size,
                shard,
                config=variant_config(plan.pseudo_variant),
                coco_out=out / "pseudo_masks_train.json",
                scale=plan.peak_scale,
            )
        )
        laps.lap("proposals_pseudo_masks")
        write_report(out, report, laps, complete=False)

    laps.start()
    report["speed"] = _speed(project, model, plan.size)
    laps.lap("speed")
    write_report(out, report, laps, complete=False)

    if plan.ple:
        from wsseg.bench.ple import ple_bench

        laps.start()
        report["ple"] = ple_bench(project, dataset, quick, seed, data_root)
        laps.lap("ple")
        write_report(out, report, laps, complete=False)
    if instances:
        laps.start()
        mplan = plan.maskrcnn or maskrcnn_plan(
            quick, len(train_split.classes), seed, *classifier_start(project), epochs=plan.maskrcnn_epochs
        )
        pseudo_coco = report.get("pseudo_masks", {}).get("coco")
        report["maskrcnn"] = bench_maskrcnn(project, mplan, Path(pseudo_coco) if pseudo_coco else None)
        laps.lap("maskrcnn")
        write_report(out, report, laps, complete=False)

    write_report(out, report, laps, complete=True)
    return report


def write_report(out: Path, report: dict[str, Any], laps: Laps, complete: bool) -> None:
    """Write ``report.json`` and ``report.md`` with the stage times so far. The run writes them after
    every stage (``complete`` false until the last): a long run that is stopped keeps what it measured."""
    report["complete"] = complete
    report["seconds"] = {**laps.wall, "total": laps.total()}
    report["cpu_seconds"] = laps.cpu
    report["load_average"] = laps.load
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "report.json", report)
    (out / "report.md").write_text(render_markdown(report))


def _speed(project: Project, model: torch.nn.Module, size: int | None) -> dict[str, float]:
    """Speed ratios measured in this run: the peak layer against the plain forward, and all PRMs of an
    image with 4 or more peaks against one forward+backward."""
    from wsseg.bench.speed import measure_prm_speed, measure_psl_speed
    from wsseg.methods.prm import PRMConfig, peak_response_maps
    from wsseg.models.normalise import to_tensor
    from wsseg.stages.make_peaks import prepare_image

    records = project.images(split="val", limit=50)
    batch = torch.stack([to_tensor(prepare_image(project, r, size)[0]) for r in records[:16]])
    speed = {"crm_peaks_over_forward": measure_psl_speed(model, batch, n_repeat=5)}
    inference = INFERENCE_PEAKS
    cfg = PRMConfig(
        class_threshold=None,
        peak_threshold=inference.peak_threshold,
        relative_threshold=inference.relative_threshold,
        smooth=inference.smooth,
    )
    for record in records:
        _, image = prepare_image(project, record, size)
        if len(peak_response_maps(model, image, cfg).peaks) >= 4:
            ratios = measure_prm_speed(model, image, n_repeat=3, cfg=cfg)
            speed["prm_all_peaks_over_fwd_bwd"] = ratios["batched"]
            speed["prm_naive_loop_over_fwd_bwd"] = ratios["naive"]
            speed["prm_num_peaks"] = ratios["num_peaks"]
            break
    from wsseg.bench.speed import measure_overlay_ms

    speed["app_overlay_ms"] = measure_overlay_ms(size=256)  # the CAMs page's pictures, 256x256
    return speed


def _versions() -> dict[str, str]:
    import torchvision

    from wsseg import __version__

    return {
        "wsseg": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "device": "cuda: " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "cpu_threads": str(torch.get_num_threads()),
        "machine": platform.machine(),
    }


def _flatten(prefix: str, value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _flatten(f"{prefix}.{k}" if prefix else k, v)
    else:
        yield prefix, value


def render_markdown(report: dict[str, Any]) -> str:
    """A human-readable report: the headline keys, then every figure."""
    lines = [
        f"# wsseg benchmark: {report['dataset']}{' (quick)' if report['quick'] else ''}",
        "",
        f"seed {report['seed']} · {report['sizes']['train_images']} training / {report['sizes']['val_images']} "
        f"validation images · classes {', '.join(report['sizes']['classes'])} · "
        f"torch {report['versions']['torch']} on {report['versions']['device']}",
        "",
    ]
    if not report.get("complete", True):
        lines += [
            f"**Partial report**: the run has not finished (stages done: "
            f"{', '.join(k for k in report['seconds'] if k != 'total')}).",
            "",
        ]
    lines += [
        "| key | value |",
        "| --- | --- |",
    ]
    for section in ("classifier", "proposals", "pseudo_masks", "maskrcnn", "ple", "speed", "curation"):
        if section in report:
            for key, value in _flatten(section, report[section]):
                shown = f"{value:.4g}" if isinstance(value, float) else json.dumps(value)
                lines.append(f"| `{key}` | {shown} |")
    cpu, load = report.get("cpu_seconds", {}), report.get("load_average", {})
    lines += [
        "",
        "## Time per stage",
        "",
        "Wall seconds; CPU seconds of the bench process (its threads, not worker processes); the machine's",
        "1-minute load average at the stage's end (above 2 on 2 cores, other work slowed the stage).",
        "",
        "| stage | wall s | CPU s | load |",
        "| --- | --- | --- | --- |",
    ]
    for stage, wall in report["seconds"].items():
        cells = [f"{cpu[stage]:.1f}" if stage in cpu else "", f"{load[stage]:.1f}" if stage in load else ""]
        lines.append(f"| {stage} | {wall:.1f} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def run_from_args(args: argparse.Namespace) -> None:
    if getattr(args, "reliability", False):
        from wsseg.bench.reliability import render_reliability, run_reliability

        print(render_reliability(run_reliability(args.out, args.seed)))
        print(f"report written to {Path(args.out) / 'report.json'} and report.md")
        return
    if getattr(args, "project", None) is not None and not getattr(args, "curation", False):
        raise BadInputError("--project", "is only used with --curation")
    if getattr(args, "curation", False):
        from wsseg.bench.curation_run import run_curation_bench

        report = run_curation_bench(
            args.dataset, args.quick, args.out, args.seed, args.data_root, args.project
        )
        print(render_markdown(report))
        print(f"report written to {Path(args.out) / 'report.json'} and report.md")
        return
    report = run_bench(args.dataset, args.quick, args.out, args.seed, args.data_root)
    print(render_markdown(report))
    print(f"report written to {Path(args.out) / 'report.json'} and report.md")
