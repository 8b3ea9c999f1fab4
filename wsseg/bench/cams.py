"""The bench's comparison of the CAM methods (``cams.*``): the score card of every method
(``wsseg.stages.score_cams``) on the bench's validation images with the classifier it trained, and the
time one method's map of one class takes for a 256x256 image on this machine.

Keys: ``cams.<method>.{pointing, peak_precision, instance_recall, miou, threshold, pseudo_map50,
seconds_per_image, seconds_256}``, ``cams.images``, ``cams.layer``, ``cams.best_pointing``, and
``cams.skipped`` (method -> why: Score-CAM on a layer of more than ``SCORECAM_MAX_CHANNELS`` channels).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from wsseg.methods.cams import LABELS, METHODS, class_map
from wsseg.models.cam_models import CamModel, peak_classifier_cams
from wsseg.models.classifier import PeakClassifier
from wsseg.stages.recipes import InferencePeaks
from wsseg.stages.score_cams import best_pointing, score_cams
from wsseg.store.project import Project

#: Validation images scored: the quick bench's few, the full bench's more.
IMAGES = {True: 8, False: 50}

#: Score-CAM runs one forward pass per channel of the layer: past this many channels (a pretrained
#: backbone's 1280 or 2048) the bench leaves it out and says so (``cams.skipped``).
SCORECAM_MAX_CHANNELS = 256


def seconds_256(model: CamModel, method: str, repeat: int = 3) -> float:
    """Median seconds of one ``method`` map of class 0 for a 256x256 image (after one warm-up)."""
    image = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    class_map(model, image, 0, method)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        class_map(model, image, 0, method)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench_cams(
    project: Project,
    model: PeakClassifier,
    classes: list[str],
    size: int | None,
    inference: InferencePeaks,
    quick: bool,
) -> dict[str, Any]:
    """Every CAM method's score card on the validation split, and its 256 px time (module docstring)."""
    cams = peak_classifier_cams(model, classes, "the bench's classifier")
    channels = model.backbone.out_channels
    skipped = {}
    if channels > SCORECAM_MAX_CHANNELS:
        skipped["scorecam"] = f"{channels} channels at the scored layer: {channels} forward passes a map"
    methods = [m for m in METHODS if m not in skipped]
    card = score_cams(project, cams, methods, "val", IMAGES[quick], None, size, model.config.peaks, inference)
    out: dict[str, Any] = {
        "images": card["images"],
        "layer": card["layer"],
        "best_pointing": best_pointing(card),
        "skipped": skipped,
    }
    for method, row in card["methods"].items():
        out[method] = {k: v for k, v in row.items() if k != "label"} | {
            "seconds_256": seconds_256(cams, method)
        }
    return out


def cams_table(section: dict[str, Any]) -> list[str]:
    """The report's lines for ``cams``: one row a method, PRM's class response map first."""
    lines = [
        "## CAM methods",
        "",
        f"{section['images']} validation images, layer `{section['layer']}`; points best: "
        f"**{LABELS[section['best_pointing']]}**. mIoU at the method's best threshold (in brackets); seconds "
        "per image for its tagged classes, and for one 256x256 map on this machine.",
        "",
        "| method | pointing | peak precision | instance recall | mIoU | pseudo mAP50 | s / image | s / 256 px map |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for method, why in section.get("skipped", {}).items():
        lines.append(f"| {LABELS[method]} | not run: {why} | | | | | | |")
    for method in METHODS:
        if method in section:
            r = section[method]
            lines.append(
                f"| {LABELS[method]} | {r['pointing']:.3f} | {r['peak_precision']:.3f} | {r['instance_recall']:.3f} "
                f"| {r['miou']:.3f} ({r['threshold']:.2f}) | {r['pseudo_map50']:.3f} | {r['seconds_per_image']:.3f} "
                f"| {r['seconds_256']:.3f} |"
            )
    return lines
