"""``wsseg bench``: train and measure every built stage on one dataset; write report.json and report.md.

The benchmark goes through the product's own path: the data are written as tagged folders (with their
ground truth as COCO JSON, used only for evaluation), imported into a fresh project, and each stage
runs through the same functions as the command line. A key appears in the report only when its stage
ran; nothing is estimated or copied from an earlier run. What a run may take from outside is named in
its report: the quick shapes plan starts from the shipped demo classifier instead of training one
(``BenchPlan.shipped_classifier``, named in ``classifier.source``), and ``--weights`` starts the
classifier and both Mask R-CNNs from pretrained weights (``start``, with the file's SHA-256).
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from wsseg.bench.cams import bench_cams
from wsseg.bench.common import bench_classifier, bench_project, render_markdown, versions, write_report
from wsseg.bench.curation_run import run_curation_bench
from wsseg.bench.data import dataset_splits
from wsseg.bench.maskrcnn import bench_maskrcnn, classifier_start
from wsseg.bench.ple import ple_bench
from wsseg.bench.pseudo import bench_pseudo_masks
from wsseg.bench.reliability import render_reliability, run_reliability
from wsseg.bench.scale import render_scale, run_scale
from wsseg.bench.speed import measure_compare_ms, measure_overlay_ms, measure_prm_speed, measure_psl_speed
from wsseg.bench.timing import Laps
from wsseg.errors import BadInputError
from wsseg.methods.prm import peak_response_maps
from wsseg.models.normalise import to_tensor
from wsseg.stages.evaluate_classifier import evaluate_classifier
from wsseg.stages.make_peaks import prepare_image
from wsseg.stages.recipes import (
    INFERENCE_PEAKS,
    BenchPlan,
    Start,
    maskrcnn_plan,
    plan_for,
    retrieval_variant,
)
from wsseg.stages.train_classifier import load_classifier
from wsseg.store.importer import ground_truth
from wsseg.store.project import Project

#: What the bench measures after the classifier, in order (``--only`` picks some).
SECTIONS = ("cams", "pseudo", "speed", "ple", "maskrcnn")


def run_bench(
    dataset: str,
    quick: bool,
    out: Path,
    seed: int = 0,
    data_root: Path | None = None,
    plan: BenchPlan | None = None,
    start: Start | None = None,
    sections: tuple[str, ...] = SECTIONS,
) -> dict[str, Any]:
    """Run the benchmark; write ``out/report.json`` and ``out/report.md``; return the report.

    ``sections``: which measurements follow the classifier's training and evaluation (always run),
    a subset of ``SECTIONS``; the report names them (``sections``).

    ``plan`` replaces the recipe of ``wsseg.stages.recipes.plan_for`` (the tests use a tiny one);
    ``start``: the pretrained start ``plan_for`` builds its plan with (a given plan carries its own)."""
    out = Path(out)
    work = out / "work"
    shutil.rmtree(work, ignore_errors=True)
    laps = Laps()
    report: dict[str, Any] = {
        "dataset": dataset,
        "quick": quick,
        "seed": seed,
        "versions": versions(),
        "sections": list(sections),
    }

    laps.start()
    train_split, val_split = dataset_splits(dataset, seed, data_root)
    plan = plan or plan_for(dataset, quick, len(train_split.classes), seed, start)
    report["start"] = start_record(plan.start)
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
        "shipped_classifier": plan.shipped_classifier,
        "maskrcnn_epochs": plan.maskrcnn_epochs,
        "maskrcnn_model": plan.maskrcnn_model,
    }

    laps.start()
    source = bench_classifier(project, plan)
    laps.lap("classifier_install" if plan.shipped_classifier else "classifier_train")
    write_report(out, report, laps, complete=False)

    laps.start()
    model, classes, extra = load_classifier(project, "classifier")
    if plan.shipped_classifier:  # its own model config; its training is not this run's
        report["plan"].update(classifier=extra["model"], train=None)
    inference = replace(INFERENCE_PEAKS, scale=plan.peak_scale)
    report["classifier"] = {
        "source": source,
        **evaluate_classifier(project, model, classes, split="val", size=plan.size, inference=inference),
    }
    laps.lap("classifier_eval")
    write_report(out, report, laps, complete=False)

    truth = ground_truth(project)
    instances = truth is not None and any(truth.instances.values())  # camvid has none: semantic only
    if instances and "cams" in sections:
        laps.start()
        report["cams"] = bench_cams(project, model, classes, plan.size, inference, quick)
        laps.lap("cams")
        write_report(out, report, laps, complete=False)
    if instances and "pseudo" in sections:
        laps.start()
        shard = (0, plan.pseudo_every)
        report.update(
            bench_pseudo_masks(
                project,
                model,
                plan.size,
                shard,
                config=retrieval_variant(plan.pseudo_variant),
                coco_out=out / "pseudo_masks_train.json",
                scale=plan.peak_scale,
            )
        )
        laps.lap("proposals_pseudo_masks")
        write_report(out, report, laps, complete=False)

    if "speed" in sections:
        laps.start()
        report["speed"] = _speed(project, model, plan.size)
        laps.lap("speed")
        write_report(out, report, laps, complete=False)

    if plan.ple and "ple" in sections:
        laps.start()
        report["ple"] = ple_bench(project, dataset, quick, seed, data_root)
        laps.lap("ple")
        write_report(out, report, laps, complete=False)
    if instances and "maskrcnn" in sections:
        laps.start()
        mplan = plan.maskrcnn or maskrcnn_plan(
            quick,
            len(train_split.classes),
            seed,
            *classifier_start(project),
            epochs=plan.maskrcnn_epochs,
            max_images=plan.maskrcnn_images,
            start=plan.start,
            model=plan.maskrcnn_model,
            augment=plan.augment,
        )
        pseudo_coco = report.get("pseudo_masks", {}).get("coco")
        report["maskrcnn"] = bench_maskrcnn(project, mplan, Path(pseudo_coco) if pseudo_coco else None)
        laps.lap("maskrcnn")
        write_report(out, report, laps, complete=False)

    write_report(out, report, laps, complete=True)
    return report


def parse_sections(text: str | None) -> tuple[str, ...]:
    """``--only cams,speed`` -> ("cams", "speed"); None -> every section."""
    if text is None:
        return SECTIONS
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names or set(names) - set(SECTIONS):
        raise BadInputError(
            "--only", f"expected a comma-separated subset of {', '.join(SECTIONS)}; got {text!r}"
        )
    return names


def start_record(start: Start | None) -> dict[str, Any]:
    """The report's ``start``: where the networks' weights began (a weights file with its SHA-256)."""
    if start is None:
        return {"weights": None, "what": "from scratch (random initialisation)"}
    record: dict[str, Any] = {"backbone": start.backbone, "weights": start.weights}
    path = Path(start.weights)
    if path.is_file():
        record["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    record["frozen_backbone"] = start.frozen_backbone
    record["what"] = (
        f"classifier and both Mask R-CNNs from {start.backbone} weights {path.name}"
        + (" (the classifier's backbone frozen: only its head trained)" if start.frozen_backbone else "")
        + "; the estimator's networks from the classifier"
    )
    return record


def check_start(backbone: str | None, weights: str | None, frozen_backbone: bool = False) -> Start | None:
    """``--backbone`` / ``--weights`` / ``--frozen-backbone`` as a ``Start`` (None without weights); the
    backbone defaults to ``mobilenet_v2``, the shared weights file's network. A file that is not there is
    refused here, before any data is written."""
    if weights is None:
        if backbone is not None:
            raise BadInputError(f"--backbone {backbone}", "is only used with --weights")
        if frozen_backbone:
            raise BadInputError("--frozen-backbone", "is only used with --weights")
        return None
    backbone = backbone or "mobilenet_v2"
    if backbone not in PRETRAINED_BACKBONES:
        raise BadInputError(
            f"--backbone {backbone}", f"expected one of {', '.join(PRETRAINED_BACKBONES)} with --weights"
        )
    path = Path(weights)
    if ("/" in weights or path.suffix) and not path.is_file():
        raise BadInputError(weights, "weights file not found (expected a torchvision-format state dict)")
    return Start(backbone, str(path.resolve()) if path.is_file() else weights, frozen_backbone)


#: Backbones the classifier and Mask R-CNN both take from pretrained weights.
PRETRAINED_BACKBONES = ("mobilenet_v2", "mobilenet_v3", "resnet50")


def _speed(project: Project, model: torch.nn.Module, size: int | None) -> dict[str, float]:
    """Speed ratios measured in this run: the peak layer against the plain forward, and all PRMs of an
    image with 4 or more peaks against one forward+backward."""
    records = project.images(split="val", limit=50)
    batch = torch.stack([to_tensor(prepare_image(project, r, size)[0]) for r in records[:16]])
    speed = {"crm_peaks_over_forward": measure_psl_speed(model, batch, n_repeat=5)}
    cfg = INFERENCE_PEAKS.prm_config()
    for record in records:
        _, image = prepare_image(project, record, size)
        if len(peak_response_maps(model, image, cfg).peaks) >= 4:
            ratios = measure_prm_speed(model, image, n_repeat=3, cfg=cfg)
            speed["prm_all_peaks_over_fwd_bwd"] = ratios["batched"]
            speed["prm_naive_loop_over_fwd_bwd"] = ratios["naive"]
            speed["prm_num_peaks"] = ratios["num_peaks"]
            break
    speed["app_overlay_ms"] = measure_overlay_ms(size=256)  # the CAMs page's pictures, 256x256
    speed["app_compare_ms"] = measure_compare_ms(size=256)  # its comparison of 7 methods, maps cached
    return speed


def run_from_args(args: argparse.Namespace) -> None:
    if getattr(args, "scale", False):
        print(render_scale(run_scale(args.out, args.quick, args.seed)))
        print(f"report written to {Path(args.out) / 'report.json'} and report.md")
        return
    if getattr(args, "reliability", False):
        print(render_reliability(run_reliability(args.out, args.seed)))
        print(f"report written to {Path(args.out) / 'report.json'} and report.md")
        return
    if getattr(args, "project", None) is not None and not getattr(args, "curation", False):
        raise BadInputError("--project", "is only used with --curation")
    if getattr(args, "weights", None) is not None and (args.curation or args.reliability):
        raise BadInputError(
            "--weights", "is used by the stage benchmark only (not --curation or --reliability)"
        )
    if getattr(args, "curation", False):
        report = run_curation_bench(
            args.dataset, args.quick, args.out, args.seed, args.data_root, args.project
        )
        print(render_markdown(report))
        print(f"report written to {Path(args.out) / 'report.json'} and report.md")
        return
    start = check_start(
        getattr(args, "backbone", None),
        getattr(args, "weights", None),
        getattr(args, "frozen_backbone", False),
    )
    sections = parse_sections(getattr(args, "only", None))
    report = run_bench(
        args.dataset, args.quick, args.out, args.seed, args.data_root, start=start, sections=sections
    )
    print(render_markdown(report))
    print(f"report written to {Path(args.out) / 'report.json'} and report.md")
