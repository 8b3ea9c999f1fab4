"""Benchmark of steps 4 and 5: proposal quality and speed, pseudo-mask mAP on the training images.

``bench_pseudo_masks`` runs the product's stages on (a shard of) the bench project's training split:
``make_peaks`` with the inference peak settings, ``make_proposals``, then ``make_pseudo_masks`` once per
strategy, and scores them against the true instances of those training images (evaluation only):

- ``proposals.abo`` / ``proposals.recall_50``: average best overlap and recall at IoU 0.5 of the
  stored proposals, pooled over every true instance;
- ``proposals.seconds_per_image``: mean compute time of one image's proposals in one worker;
  ``proposals.over_felzenszwalb``: selective search over one felzenszwalb call on the same 256x256
  image, timed in this run;
- ``pseudo_masks.<strategy>.map25/map50/map75``: mask mAP of the pseudo masks (``wsseg.methods.mask_map``);
- ``pseudo_masks.oracle.*``: the same with the true instance centres used as peaks (their PRMs seeded
  there, class = the true class), which tells the loss due to the peaks from the loss due to the
  choice of proposal.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from wsseg.bench.speed import measure_proposal_speed
from wsseg.data.images import read_image
from wsseg.methods.mask_map import mask_map
from wsseg.methods.overlap import best_overlaps
from wsseg.methods.prm import response_maps_at
from wsseg.methods.pseudo_masks import PeakInput, RetrievalConfig, retrieve
from wsseg.stages.make_peaks import STAGE as PEAKS_STAGE
from wsseg.stages.make_peaks import load_result, make_peaks, prepare_image
from wsseg.stages.make_proposals import STAGE as PROPOSALS_STAGE
from wsseg.stages.make_proposals import load_proposals, make_proposals
from wsseg.stages.make_pseudo_masks import export_coco, make_pseudo_masks, resize_prms
from wsseg.stages.recipes import INFERENCE_PEAKS, RETRIEVAL_VARIANTS
from wsseg.store.instances import stored_instances, true_instances
from wsseg.store.project import ImageRecord, Project
from wsseg.structures import Instances


def proposal_quality(project: Project, run_id: int, truth: dict[int, Instances]) -> dict[str, float]:
    """ABO and recall at IoU 0.5 of a proposals run, pooled over the true instances of ``truth``'s images."""
    best = [
        best_overlaps(
            load_proposals(project.artifact(PROPOSALS_STAGE, run_id, image_id, ".json")).masks, inst.masks
        )
        for image_id, inst in truth.items()
    ]
    pooled = np.concatenate(best) if best else np.zeros(0)
    return {"abo": float(pooled.mean()), "recall_50": float((pooled >= 0.5).mean()), "instances": len(pooled)}


def instance_centres(masks: np.ndarray) -> list[tuple[int, int]]:
    """(y, x) of each NxHxW mask's centroid, moved to the nearest pixel of the mask when it falls outside."""
    out = []
    for mask in masks:
        ys, xs = np.nonzero(mask)
        if len(ys) == 0:
            out.append((0, 0))
            continue
        cy, cx = ys.mean(), xs.mean()
        k = int(np.argmin((ys - cy) ** 2 + (xs - cx) ** 2))
        out.append((int(ys[k]), int(xs[k])))
    return out


def oracle_instances(
    project: Project,
    model: Any,
    size: int | None,
    peaks_run: int,
    proposals_run: int,
    truth: dict[int, Instances],
    config: RetrievalConfig,
    scale: float = 1.0,
) -> dict[int, Instances]:
    """Pseudo masks chosen with the true instance centres as peaks (PRMs seeded there by ``model``, on
    the image as the peaks stage saw it: ``size``, then enlarged ``scale`` times)."""
    out = {}
    for image_id, inst in truth.items():
        record = project.image(image_id)
        image, tensor = prepare_image(project, record, size, scale)
        shape = inst.masks.shape[1:]
        ratio = (image.shape[0] / shape[0], image.shape[1] / shape[1])
        centres = instance_centres(inst.masks)
        points = [
            (int(c), int(y * ratio[0]), int(x * ratio[1]))
            for c, (y, x) in zip(inst.labels, centres, strict=True)
        ]
        prms = resize_prms(response_maps_at(model, tensor, points, INFERENCE_PEAKS.prm_config()), shape)
        crm = load_result(project.artifact(PEAKS_STAGE, peaks_run, image_id, ".npz"))["crm"]
        peaks = [
            PeakInput(int(c), y, x, 1.0, m)
            for (c, _, _), (y, x), m in zip(points, centres, prms, strict=True)
        ]
        proposals = load_proposals(project.artifact(PROPOSALS_STAGE, proposals_run, image_id, ".json"))
        found = retrieve(proposals, peaks, crm, config)
        if found:
            out[image_id] = Instances(
                np.stack([f.mask for f in found]),
                np.array([f.class_index for f in found], np.int64),
                np.array([f.score for f in found]),
            )
        else:
            out[image_id] = Instances.empty(*shape)
    return out


def _maps(truth: dict[int, Instances], predicted: dict[int, Instances], num_classes: int) -> dict[str, float]:
    return dict(mask_map(truth, predicted, num_classes).maps)


def _speed_image(project: Project, record: ImageRecord) -> np.ndarray:
    return cv2.resize(
        read_image(project.image_path(record), record.filename), (256, 256), interpolation=cv2.INTER_AREA
    )


def bench_pseudo_masks(
    project: Project,
    model: Any,
    size: int | None,
    shard: tuple[int, int] = (0, 1),
    workers: int = 2,
    config: RetrievalConfig | None = None,
    coco_out: Path | None = None,
    progress: Callable[[str], Callable[[int, int], None] | None] | None = None,
    scale: float = INFERENCE_PEAKS.scale,
) -> dict[str, Any]:
    """Run peaks, proposals and pseudo masks on one shard of the training split and measure them.

    ``model``: the bench's trained classifier (for the oracle PRMs); ``size``: its input size;
    ``scale``: the peaks stage's enlargement (``make_peaks``).
    ``progress(stage)`` gives each stage's progress callback. Returns the report sections
    ``{"proposals": ..., "pseudo_masks": ...}``; ``pseudo_masks.coco`` is the COCO JSON written to
    ``coco_out`` with the masks of ``config.strategy`` (for the Mask R-CNN stage). The peaks are the
    recipe's inference peaks (``wsseg.stages.recipes.INFERENCE_PEAKS``), each image enlarged ``scale`` times.
    """
    config = config or RetrievalConfig()
    bar = progress or (lambda stage: None)
    peaks_run = make_peaks(
        project,
        "classifier",
        INFERENCE_PEAKS.prm_config(),
        shard,
        split="train",
        progress=bar("peaks"),
        scale=scale,
        tagged_only=True,  # the pseudo masks use the tagged classes' peaks only
    )
    proposals_run = make_proposals(
        project, split="train", shard=shard, workers=workers, progress=bar("proposals")
    )
    records = project.images(split="train")[shard[0] :: shard[1]]
    truth = true_instances(project, records)
    num_classes = len(project.classes())

    proposals = proposal_quality(project, proposals_run, truth)
    proposals["seconds_per_image"] = project.runs("proposals")[0].metrics["seconds_per_image"]
    speed = measure_proposal_speed(_speed_image(project, records[0]))
    proposals["over_felzenszwalb"] = speed["ratio"]

    pseudo: dict[str, Any] = {"images": len(records)}
    chosen_run = None
    for strategy, changes in RETRIEVAL_VARIANTS.items():
        cfg = dataclasses.replace(config, **changes)
        run_id = make_pseudo_masks(
            project,
            cfg,
            peaks_run,
            proposals_run,
            "train",
            shard,
            workers=workers,
            progress=bar(f"pseudo masks {strategy}"),
        )
        pseudo[strategy] = _maps(truth, stored_instances(project, run_id, truth), num_classes)
        if cfg == config:
            chosen_run = run_id
    pseudo["oracle"] = {
        "strategy": config.strategy,
        **_maps(
            truth,
            oracle_instances(project, model, size, peaks_run, proposals_run, truth, config, scale),
            num_classes,
        ),
    }
    pseudo["config"] = config.to_dict()
    pseudo["peak_scale"] = scale
    if coco_out is not None and chosen_run is not None:
        export_coco(project, chosen_run, coco_out)
        pseudo["coco"] = str(coco_out)
    return {"proposals": proposals, "pseudo_masks": pseudo}
