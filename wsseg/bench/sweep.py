"""Classifier recipe sweep: ``python -m wsseg.bench.sweep --out DIR [--variants a,b] [--train-images N]``.

Trains several classifier variants on the same benchmark data (one project, written once) and
measures the peak metrics of each, so recipe choices in docs/benchmark.md rest on one run's figures.
Each variant's result is appended to ``DIR/sweep.json`` as soon as it is measured (a cut-off run
keeps what it finished) and the table is rewritten to ``DIR/sweep.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from wsseg.bench.common import write_split
from wsseg.bench.data import dataset_splits
from wsseg.fileio import write_json
from wsseg.stages.evaluate_classifier import evaluate_classifier
from wsseg.stages.recipes import INFERENCE_PEAKS, InferencePeaks, plan_for
from wsseg.stages.train_classifier import load_classifier, train_classifier
from wsseg.store.importer import import_source
from wsseg.store.project import Project
from wsseg.training.engine import tqdm_callback

#: name -> (ClassifierConfig changes, TrainConfig changes), applied to the benchmark's recipe.
VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "base": ({}, {}),
    "rf73": ({"small_dilations": (1, 1)}, {}),
    "rf57": ({"small_dilations": (1,)}, {}),
    "rf89": ({"small_dilations": (2, 1)}, {}),
    "rf73-wide": ({"small_dilations": (1, 1), "small_width": 48}, {}),
    "base-3x": ({}, {"epochs_factor": 3}),
    "rf73-3x": ({"small_dilations": (1, 1)}, {"epochs_factor": 3}),
    "rf57-3x": ({"small_dilations": (1,)}, {"epochs_factor": 3}),
    "rf57-3x-seed1": ({"small_dilations": (1,)}, {"epochs_factor": 3, "seed": 1}),
    "rf57-2x": ({"small_dilations": (1,)}, {"epochs_factor": 2}),
}

#: Inference settings measured for every variant (the recipe's first).
INFERENCE = {
    "default": INFERENCE_PEAKS,
    "rel0.5-s1": InferencePeaks(relative_threshold=0.5),
    "rel0.5-s0": InferencePeaks(smooth=None),
}


def run_sweep(
    out: Path,
    variants: list[str],
    dataset: str = "shapes",
    train_images: int | None = None,
    seed: int = 0,
    workers: int = 0,
    epochs: int | None = None,
    val_images: int | None = None,
) -> list[dict[str, Any]]:
    out.mkdir(parents=True, exist_ok=True)
    train_split, val_split = dataset_splits(dataset, seed, None)
    plan = plan_for(dataset, False, len(train_split.classes), seed)
    if epochs is not None:
        plan = dataclasses.replace(plan, train=dataclasses.replace(plan.train, epochs=epochs))
    project_root = out / "project"
    if not Project.is_project(project_root):
        project = Project.create(project_root, name=f"sweep-{dataset}")
        write_split(out / "data" / "train", train_split, train_images or plan.train_images)
        write_split(out / "data" / "val", val_split, val_images or plan.val_images)
        import_source(project, out / "data" / "train", split="train")
        import_source(project, out / "data" / "val", split="val")
    project = Project(project_root)
    results: list[dict[str, Any]] = []
    for name in variants:
        model_changes, train_changes = VARIANTS[name]
        train_changes = dict(train_changes)
        factor = train_changes.pop("epochs_factor", 1)
        model_config = dataclasses.replace(plan.classifier, **model_changes)
        train_config = dataclasses.replace(
            plan.train, epochs=plan.train.epochs * factor, workers=workers, **train_changes
        )
        started = time.perf_counter()
        train_classifier(
            project,
            model_config,
            train_config,
            name=name,
            size=plan.size,
            augment=plan.augment,
            callback=tqdm_callback(name),
        )
        seconds = time.perf_counter() - started
        model, classes, _ = load_classifier(project, name)
        row: dict[str, Any] = {"variant": name, "train_seconds": seconds, "epochs": train_config.epochs}
        for label, inference in INFERENCE.items():
            metrics = evaluate_classifier(
                project, model, classes, split="val", inference=inference, prm_images=50
            )
            row[label] = {k: v for k, v in metrics.items() if not isinstance(v, dict)}
        results.append(row)
        write_json(out / "sweep.json", results)
        (out / "sweep.md").write_text(render(results))
        print(json.dumps(row), flush=True)
    return results


def render(results: list[dict[str, Any]]) -> str:
    keys = (
        "cls_map",
        "peak_precision",
        "instance_recall",
        "count_mae",
        "peaks_per_image",
        "prm_point_precision",
    )
    lines = ["| variant | epochs | train s | inference | " + " | ".join(keys) + " |"]
    lines.append("|" + "---|" * (4 + len(keys)))
    for row in results:
        for label in INFERENCE:
            m = row[label]
            cells = [f"{m[k]:.3f}" if isinstance(m.get(k), float) else str(m.get(k)) for k in keys]
            lines.append(
                f"| {row['variant']} | {row['epochs']} | {row['train_seconds']:.0f} | {label} | "
                + " | ".join(cells)
                + " |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--dataset", default="shapes")
    parser.add_argument("--train-images", type=int, default=None)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None, help="base epochs (default: the benchmark's)")
    parser.add_argument("--val-images", type=int, default=None)
    args = parser.parse_args()
    names = [v for v in args.variants.split(",") if v]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; expected some of {sorted(VARIANTS)}")
    run_sweep(
        args.out,
        names,
        args.dataset,
        args.train_images,
        workers=args.workers,
        epochs=args.epochs,
        val_images=args.val_images,
    )


if __name__ == "__main__":
    main()
