"""What the benchmarks share: the bench project written from a dataset's splits, the classifier trained
on it with the plan's recipe (or the shipped one), and the report (the versions it ran with, report.json
and report.md)."""

from __future__ import annotations

import json
import platform
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision

from wsseg import __version__
from wsseg.bench.cams import cams_table
from wsseg.bench.data import BenchSplit
from wsseg.bench.timing import Laps
from wsseg.data.coco import write_coco
from wsseg.data.tagged_folder import write_tagged_folder
from wsseg.demo.project import DEMO_CHECKPOINT, install_classifier
from wsseg.errors import BadInputError
from wsseg.fileio import write_json
from wsseg.stages.recipes import BenchPlan
from wsseg.stages.train_classifier import train_classifier
from wsseg.store.importer import import_source
from wsseg.store.project import Project
from wsseg.training.engine import load_checkpoint, tqdm_callback

SHIPPED = "shipped demo classifier (assets/demo-classifier.pt)"
"""``classifier.source`` of a run that starts from ``DEMO_CHECKPOINT`` (``BenchPlan.shipped_classifier``)."""
TRAINED = "trained from scratch in this run (plan.classifier, plan.train)"
"""``classifier.source`` of a run that trains its own classifier."""


def write_split(folder: Path, split: BenchSplit, limit: int) -> int:
    """Write up to ``limit`` samples as a tagged folder with ground truth; return how many."""
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
    n_train = write_split(work / "data" / "train", train_split, plan.train_images)
    n_val = write_split(work / "data" / "val", val_split, plan.val_images)
    import_source(project, work / "data" / "train", split="train")
    import_source(project, work / "data" / "val", split="val")
    return project, {"train_images": n_train, "val_images": n_val, "classes": list(project.classes())}


def bench_classifier(project: Project, plan: BenchPlan, shipped: Path = DEMO_CHECKPOINT) -> str:
    """The run's classifier ``checkpoints/classifier``: with ``plan.shipped_classifier`` the checkpoint
    ``shipped`` copied in (its classes must be the project's, in order), else trained by
    ``train_bench_classifier``. Returns its ``classifier.source`` for the report."""
    if not plan.shipped_classifier:
        train_bench_classifier(project, plan)
        if plan.start is not None:
            return f"trained in this run from the {plan.start.backbone} weights {plan.start.weights}"
        return TRAINED
    classes = list(load_checkpoint(Path(shipped))["extra"]["classes"])
    if classes != project.classes():
        raise BadInputError(
            str(shipped), f"knows the classes {classes}, the bench data has {project.classes()}"
        )
    if install_classifier(project, Path(shipped)) is None:
        raise BadInputError(str(project.root), "already has a classifier; the bench starts a fresh project")
    return SHIPPED if Path(shipped) == DEMO_CHECKPOINT else f"shipped classifier ({shipped})"


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


def versions() -> dict[str, str]:
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
    if "source" in report.get("classifier", {}):
        lines += [f"Classifier: {report['classifier']['source']}.", ""]
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
    for section in (
        "classifier",
        "cams",
        "proposals",
        "pseudo_masks",
        "maskrcnn",
        "ple",
        "speed",
        "curation",
    ):
        if section in report:
            for key, value in _flatten(section, report[section]):
                shown = f"{value:.4g}" if isinstance(value, float) else json.dumps(value)
                lines.append(f"| `{key}` | {shown} |")
    if "cams" in report:
        lines += ["", *cams_table(report["cams"])]
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
