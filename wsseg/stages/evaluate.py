"""Stage: evaluate a trained model on a project split against its ground truth.

``EVALUATORS`` maps a stage name (``--stage``) to its function; each returns a metrics dict and
records an ``evaluate`` run. For ``maskrcnn``: mask mAP at IoU 0.25/0.5/0.75 (and per class), pointing
accuracy and counting error (``wsseg.methods.mask_map``); on a project without ground truth (tagged
photos), how the classes it finds agree with the tags (``wsseg.store.instances.tag_agreement``). Its
predictions go to the project store (table ``predictions``, one row per instance, tied to the run)
and, with the metrics, to ``artifacts/evaluate/run-<id>/`` as ``predictions.json`` (a COCO result
list, category ids as in ``ground_truth.json``) and ``metrics.json``.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from wsseg.data.coco import encode_mask
from wsseg.errors import BadInputError
from wsseg.fileio import write_json
from wsseg.methods.mask_map import IOU_THRESHOLDS, threshold_key
from wsseg.models.maskrcnn import predict
from wsseg.stages.common import image_progress
from wsseg.stages.evaluate_ple import evaluate_ple
from wsseg.stages.train_maskrcnn import load_maskrcnn
from wsseg.store.importer import ground_truth
from wsseg.store.instances import evaluate_split, evaluation_split, score_results, tag_agreement
from wsseg.store.project import Project
from wsseg.structures import Instances
from wsseg.training.device import chosen_device

STAGE = "evaluate"


def evaluate_maskrcnn(
    project: Project,
    name: str = "maskrcnn",
    split: str | None = "val",
    score_threshold: float = 0.5,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Score the Mask R-CNN of ``checkpoints/<name>`` on ``split`` (None: every image) against the
    ground truth, or against the tags when the project has none; store its predictions; return metrics."""
    model, classes, _ = load_maskrcnn(project, name, device=chosen_device())
    if classes != project.classes():
        raise BadInputError(name, f"was trained on classes {classes}, the project has {project.classes()}")
    trained = [r for r in project.runs("maskrcnn") if r.status == "done" and r.config.get("name") == name]
    config = {
        "stage": "maskrcnn",
        "model": name,
        "model_run": trained[0].id if trained else None,
        "split": split,
        "score_threshold": score_threshold,
    }
    score = evaluate_split if ground_truth(project) is not None else tag_agreement
    run_id = project.start_run(STAGE, config)
    try:
        metrics, predictions = score(
            project, partial(predict, model), split, score_threshold, progress=progress
        )
        folder = project.artifacts(STAGE, run_id)
        store_predictions(project, run_id, predictions, classes, folder / "predictions.json")
        write_json(folder / "metrics.json", {"config": config, "metrics": metrics})
    except BaseException:
        project.finish_run(run_id, "failed")
        raise
    metrics = {"run": run_id, **metrics}
    project.finish_run(run_id, "done", metrics)
    return metrics


def store_predictions(
    project: Project, run_id: int, predictions: dict[int, Instances], classes: list[str], coco_path: Path
) -> None:
    """Write predictions to the store's ``predictions`` table and as a COCO result file."""
    results = []
    for image_id, inst in predictions.items():
        rows = [
            {"class_name": classes[int(label)], "score": float(score), "rle": encode_mask(mask)}
            for mask, label, score in zip(inst.masks, inst.labels, inst.scores, strict=True)
        ]
        project.add_predictions(run_id, image_id, rows)
        results += [
            {
                "image_id": image_id,
                "category_id": classes.index(r["class_name"]) + 1,
                "segmentation": r["rle"],
                "score": r["score"],
            }
            for r in rows
        ]
    write_json(coco_path, results)


def evaluate_semantic(
    project: Project,
    name: str = "ple",
    split: str | None = "val",
    score_threshold: float = 0.5,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """mIoU of a trained pixel-label estimator (``wsseg.stages.evaluate_ple``); its label maps are written to
    ``artifacts/ple/run-<id>/``. ``score_threshold`` is unused (same signature)."""
    metrics = evaluate_ple(project, name, split, progress=progress)
    return {**metrics, "run": metrics.get("run_id")}


EVALUATORS: dict[str, Callable[..., dict[str, Any]]] = {
    "maskrcnn": evaluate_maskrcnn,
    "ple": evaluate_semantic,
}


def format_table(metrics: dict[str, Any]) -> str:
    """The metrics as a plain-text table: overall figures, then AP per class at each IoU threshold."""
    lines = []
    for key in (
        "images",
        *(threshold_key(t) for t in IOU_THRESHOLDS),
        "pointing_accuracy",
        "count_mae",
        "tag_precision",
        "tag_recall",
        "instances_per_image",
        "miou",
    ):
        if key in metrics:
            lines.append(f"{key:<20} {_show(metrics[key])}")
    for label, iou in (metrics.get("iou") or {}).items():
        lines.append(f"  IoU {label:<15} {_show(iou)}")
    per_class = {k: metrics.get(f"per_class_{k}") for k in (threshold_key(t) for t in IOU_THRESHOLDS)}
    per_class = {k: v for k, v in per_class.items() if v}
    if per_class:
        names = list(next(iter(per_class.values())))
        width = max(len("class"), *(len(n) for n in names))
        lines += ["", f"{'class':<{width}} " + " ".join(f"{k:>7}" for k in per_class)]
        for n in names:
            lines.append(f"{n:<{width}} " + " ".join(f"{_show(v[n]):>7}" for v in per_class.values()))
    return "\n".join(lines)


def _show(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def run_from_args(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    if args.stage not in EVALUATORS:
        raise BadInputError("--stage", f"expected one of {', '.join(EVALUATORS)}, got {args.stage!r}")
    project = Project(args.project)
    split = evaluation_split(project, args.split)
    print(f"evaluating on {f'split {split}' if split else 'every image'}")
    if args.predictions is not None:
        metrics, problems = score_results(project, args.predictions, split, args.score_threshold)
        for problem in problems[:20]:
            print(f"refused {problem.source}: {problem.message}", file=sys.stderr)
        if len(problems) > 20:
            print(f"... and {len(problems) - 20} more refused", file=sys.stderr)
        print(f"{metrics['results']} result(s) of {args.predictions} scored on {metrics['images']} image(s)")
        print(format_table(metrics))
        if args.out:
            write_json(args.out, metrics)
            print(f"metrics written to {args.out}")
        return
    evaluator = partial(EVALUATORS[args.stage], project, args.name or args.stage, split, args.score_threshold)
    if getattr(args, "make_image_progress", None) is not None:  # a background job: its row
        with image_progress(args, f"evaluate {args.stage}") as progress:
            metrics = evaluator(progress=progress)
    else:
        bars: list[tqdm] = []  # made at the first batch, so that an error before it prints one line only

        def progress(done: int, total: int) -> None:
            if not bars:
                bars.append(tqdm(total=total, desc=f"evaluate {args.stage}", unit="image"))
            bars[0].update(done - bars[0].n)

        try:
            metrics = evaluator(progress=progress)
        finally:
            for bar in bars:
                bar.close()
    print(format_table(metrics))
    out = args.out or project.artifacts(STAGE, metrics["run"]) / "metrics.json"
    if args.out:
        write_json(out, metrics)
    print(f"metrics written to {out}")
