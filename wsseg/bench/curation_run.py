"""``wsseg bench --curation``: does curating in queue order pay off once Mask R-CNN is retrained?

A run of its own, every step through the command line's functions:

1. the project: the benchmark's own (``wsseg.bench.common``: tagged folders imported, the classifier trained
   with the benchmark's recipe) or a given one (``--project``; never written, all writes go to copies);
2. pseudo masks of (a shard of) the training images: peaks, proposals, a WISE run (the peak as point)
   that the queue's disagreement term compares with, then the default PRM retrieval run, the one
   curated (skipped with ``--project``: its newest finished pseudo-masks run is curated);
3. ``wsseg.bench.curation.bench_curation``: the simulated annotator reviews the first N masks of the
   queue in one copy and N random masks in another (N = ``review_fraction`` of the run's automatic
   masks); pseudo-mask mAPs before and after; the curated COCO of each copy;
4. Mask R-CNN trained three times with one model, schedule and seed, on (before) the run's masks as
   they are, (queue) and (random) the curated sets (accepted + swapped + unreviewed, rejected dropped;
   an image left with no mask drops out, as in the product's export), in a scratch copy of the
   project; each scored on its validation split (``evaluate_maskrcnn``).

Report keys: ``curation.map50_before``, ``curation.map50_after_queue``, ``curation.map50_after_random``
(Mask R-CNN mask mAP at IoU 0.5 on the validation images), ``curation.queue_over_random_map50``
(after_queue - after_random), ``curation.n``, ``curation.maskrcnn.<set>.*`` (every metric and the
training images of each), ``curation.pseudo_masks.*`` (the simulated annotator's counts and the
pseudo-mask mAPs of ``bench_curation``), and wall times.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path
from typing import Any

from wsseg.bench.common import bench_project, render_markdown, train_bench_classifier, versions
from wsseg.bench.curation import bench_curation, scratch_copy
from wsseg.bench.data import dataset_splits
from wsseg.bench.maskrcnn import _plan_dict, classifier_start, train_and_score
from wsseg.curation.queue import pseudo_run
from wsseg.errors import BadInputError
from wsseg.fileio import write_json
from wsseg.methods.pseudo_masks import RetrievalConfig
from wsseg.progress import image_bar
from wsseg.stages.make_peaks import make_peaks
from wsseg.stages.make_proposals import make_proposals
from wsseg.stages.make_pseudo_masks import make_pseudo_masks
from wsseg.stages.recipes import (
    INFERENCE_PEAKS,
    CurationPlan,
    MaskRCNNPlan,
    curation_plan,
    retrieval_variant,
    start_config,
)
from wsseg.store.project import Project

SETS = ("before", "queue", "random")


def with_classifier_start(plan: CurationPlan, project: Project) -> CurationPlan:
    """``plan`` with its three Mask R-CNNs started from the project's classifier when that has the
    small backbone (``wsseg.bench.maskrcnn.classifier_start``), else unchanged."""
    init, width = classifier_start(project)
    if init is None:
        return plan
    num_classes = plan.maskrcnn.model.num_classes
    model = start_config(num_classes, init, width)
    return dataclasses.replace(plan, maskrcnn=dataclasses.replace(plan.maskrcnn, model=model, init=init))


def make_pseudo_masks_runs(
    project: Project, shard: tuple[int, int], workers: int = 2, scale: float = INFERENCE_PEAKS.scale
) -> int:
    """Peaks (the recipe's inference peaks, images enlarged ``scale`` times), proposals, a WISE run
    (peak as point) and the default PRM retrieval run on one shard of the training split; returns the
    last run's id."""
    with image_bar("peaks") as bar:
        peaks = make_peaks(
            project,
            "classifier",
            INFERENCE_PEAKS.prm_config(),
            shard,
            split="train",
            progress=bar,
            scale=scale,
        )
    with image_bar("proposals") as bar:
        proposals = make_proposals(project, split="train", shard=shard, workers=workers, progress=bar)
    run_id = 0
    for name, config in (
        ("pseudo masks wise", retrieval_variant("wise_peak")),
        ("pseudo masks prm", RetrievalConfig()),
    ):
        with image_bar(name) as bar:
            run_id = make_pseudo_masks(
                project, config, peaks, proposals, "train", shard, workers=workers, progress=bar
            )
    return run_id


def retrain(
    project: Project, cocos: dict[str, Path], plan: MaskRCNNPlan, folder: Path
) -> dict[str, dict[str, Any]]:
    """Train and score one Mask R-CNN per COCO file of ``cocos`` (name -> file) with the same plan
    (``wsseg.bench.maskrcnn.train_and_score``), in a scratch copy of ``project`` at ``folder`` (its own
    checkpoints, with a copy of the classifier the plan starts from)."""
    copy = scratch_copy(project, folder, share=("images",))
    if plan.init is not None:
        shutil.copytree(project.root / "checkpoints" / plan.init, copy.root / "checkpoints" / plan.init)
    return train_and_score(copy, cocos, plan)


def curation_section(
    project: Project,
    out: Path,
    plan: CurationPlan,
    run_id: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Steps 3 and 4 on a project holding a finished pseudo-masks run (default: its newest) and ground
    truth; writes only under ``out``. Returns the report's ``curation`` section."""
    run = pseudo_run(project, run_id)
    auto = [m for m in project.pseudo_masks(run_id=run.id) if m["source"] == "auto"]
    images = sorted({m["image_id"] for m in auto})[: plan.maskrcnn.max_images]
    kept = set(images)
    masks = sum(1 for m in auto if m["image_id"] in kept)
    n = max(1, round(plan.review_fraction * masks))
    t = time.perf_counter()
    pseudo = bench_curation(project, out / "copies", n, run.id, seed=seed, images=images)
    review_seconds = time.perf_counter() - t
    cocos = {"before": Path(pseudo["coco_before"])}
    cocos.update({name: Path(pseudo[name]["coco"]) for name in ("queue", "random")})
    every_image = dataclasses.replace(plan.maskrcnn, max_images=None)  # the COCO files hold ``images`` only
    models = retrain(project, cocos, every_image, out / "train")
    before = models["before"]["map50"]
    return {
        "map50_before": before,
        "map50_after_queue": models["queue"]["map50"],
        "map50_after_random": models["random"]["map50"],
        "queue_gain_map50": models["queue"]["map50"] - before,
        "random_gain_map50": models["random"]["map50"] - before,
        "queue_over_random_map50": models["queue"]["map50"] - models["random"]["map50"],
        "n": pseudo["n"],
        "review_fraction": plan.review_fraction,
        "pseudo_masks_run": run.id,
        "images": len(images),
        "pseudo_masks": pseudo,
        "maskrcnn": models,
        "plan": {"maskrcnn": _plan_dict(plan.maskrcnn), "shard": list(plan.shard)},
        "review_seconds": review_seconds,
    }


def run_curation_bench(
    dataset: str,
    quick: bool,
    out: Path,
    seed: int = 0,
    data_root: Path | None = None,
    project_root: Path | None = None,
    plan: CurationPlan | None = None,
) -> dict[str, Any]:
    """Run the curation benchmark; write ``out/report.json`` and ``out/report.md``; return the report.

    ``project_root``: start from this project (its newest finished pseudo-masks run, its ground truth
    and validation split) instead of building one. The three Mask R-CNNs start from the project's
    classifier when it has the small backbone. ``plan`` replaces all of that (tests)."""
    started = time.perf_counter()
    out = Path(out)
    given = plan is not None
    timings: dict[str, float] = {}
    report: dict[str, Any] = {"dataset": dataset, "quick": quick, "seed": seed, "versions": versions()}
    t = time.perf_counter()
    if project_root is not None:
        project = Project(project_root)
        classes = project.classes()
        plan = plan or curation_plan(dataset, quick, len(classes), seed)
        report["project"] = str(project.root)
        report["sizes"] = {
            "train_images": project.count_images(split="train"),
            "val_images": project.count_images(split="val"),
            "classes": classes,
        }
    else:
        shutil.rmtree(out / "work", ignore_errors=True)
        train_split, val_split = dataset_splits(dataset, seed, data_root)
        plan = plan or curation_plan(dataset, quick, len(train_split.classes), seed)
        project, report["sizes"] = bench_project(out / "work", dataset, train_split, val_split, plan.bench)
    if not report["sizes"]["val_images"]:
        raise BadInputError(str(project.root), "has no validation images to score Mask R-CNN on")
    timings["data"] = time.perf_counter() - t

    run_id = None
    if project_root is None:
        t = time.perf_counter()
        train_bench_classifier(project, plan.bench)
        timings["classifier_train"] = time.perf_counter() - t
        t = time.perf_counter()
        run_id = make_pseudo_masks_runs(project, plan.shard, plan.workers, plan.bench.peak_scale)
        timings["pseudo_masks"] = time.perf_counter() - t
    if not given:
        plan = with_classifier_start(plan, project)

    t = time.perf_counter()
    report["curation"] = curation_section(project, out / "curation", plan, run_id, seed)
    timings["curation"] = time.perf_counter() - t
    for key, model in report["curation"]["maskrcnn"].items():
        timings[f"maskrcnn_{key}_train"] = model["train_seconds"]
        timings[f"maskrcnn_{key}_eval"] = model["eval_seconds"]
    timings["total"] = time.perf_counter() - started
    report["seconds"] = timings
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "report.json", report)
    (out / "report.md").write_text(render_markdown(report))
    return report
