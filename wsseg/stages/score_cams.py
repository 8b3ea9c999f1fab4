"""Score card of the CAM methods against a project's ground truth (``wsseg cams``, the CAMs page, the
bench's ``cams.*`` keys).

For each image of the split that has tags and true instances (at most ``images`` of them, in the
project's order), each method's map of every tagged class (``wsseg.methods.cams.class_map``) is scored
as the bench scores the class response map:

- ``pointing``: over (image, tagged class with a true instance) pairs, the fraction where the map's
  maximum lies inside a true instance of that class (Zhang et al.'s pointing game, no tolerance);
- ``peak_precision`` / ``instance_recall``: the map's peaks (``map_peaks``: the recipe's inference
  settings on the classifier's grid) inside a true instance of their class, over the peaks; the true
  instances holding a peak of their class, over the instances (``wsseg.methods.metrics.point_stats``);
- ``miou`` (and ``threshold``): the tagged classes' maps turned into a label map, each pixel the class
  of its strongest map where that map reaches the threshold, else background; mean IoU over
  background and the classes (crowd regions left out), at the best threshold of 0.05, 0.10 ... 0.95
  for that method over all scored images;
- ``pseudo_map50``: mask mAP50 (pycocotools) of the pseudo masks made when the map's peaks seed the
  proposal choice: each peak takes the selective-search proposal of highest objectness that holds it
  (the WISE rule with the peak as the point), then mask NMS;
- ``seconds_per_image``: the time the method took for the image's tagged classes, averaged.

Everything is at the size the classifier sees (``prepare_image``); true masks are resized to it.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from wsseg.errors import BadInputError
from wsseg.fileio import write_json
from wsseg.methods.cams import LABELS, class_map, map_peaks, parse_methods
from wsseg.methods.mask_map import mask_map
from wsseg.methods.metrics import PointStats, point_stats
from wsseg.methods.proposals import selective_search
from wsseg.methods.pseudo_masks import PeakInput, RetrievalConfig, retrieve
from wsseg.models.cam_models import CamModel, peak_classifier_cams
from wsseg.models.peaks import PeakConfig
from wsseg.stages.common import image_progress
from wsseg.stages.make_peaks import prepare_image
from wsseg.stages.make_proposals import resize_mask
from wsseg.stages.recipes import INFERENCE_PEAKS, InferencePeaks
from wsseg.stages.train_classifier import load_classifier
from wsseg.store.importer import ground_truth
from wsseg.store.instances import true_instances
from wsseg.store.project import Project
from wsseg.structures import Instances

#: The thresholds the map's mIoU is measured at; the best one is reported.
THRESHOLDS = np.round(np.arange(0.05, 1.0, 0.05), 2)

#: The pseudo masks of the score card: the highest-objectness proposal holding each peak.
SEEDED = RetrievalConfig(strategy="wise", point="peak", confidence="peak")

#: What the score card reports for each method, in order.
FIGURES = ("pointing", "peak_precision", "instance_recall", "miou", "pseudo_map50", "seconds_per_image")


class _Tally:
    """One method's sums over the images."""

    def __init__(self, num_classes: int) -> None:
        self.points = PointStats()
        self.pointed = 0
        self.pairs = 0
        self.seconds = 0.0
        self.images = 0
        self.confusion = np.zeros((len(THRESHOLDS), num_classes + 1, num_classes + 1), np.int64)
        self.predicted: dict[int, Instances] = {}

    def figures(self, truth: dict[int, Instances], num_classes: int) -> dict[str, Any]:
        diagonal = np.diagonal(self.confusion, axis1=1, axis2=2)
        union = self.confusion.sum(axis=1) + self.confusion.sum(axis=2) - diagonal
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.where(union > 0, diagonal / union, np.nan)
        miou = np.nanmean(iou, axis=1) if np.isfinite(iou).any() else np.zeros(len(THRESHOLDS))
        best = int(np.nanargmax(miou)) if np.isfinite(miou).any() else 0
        pseudo = mask_map(truth, self.predicted, num_classes).maps
        return {
            "pointing": self.pointed / self.pairs if self.pairs else float("nan"),
            "peak_precision": self.points.precision,
            "instance_recall": self.points.recall,
            "miou": float(miou[best]),
            "threshold": float(THRESHOLDS[best]),
            "pseudo_map50": float(pseudo["map50"]),
            "seconds_per_image": self.seconds / max(self.images, 1),
            "peaks_per_image": self.points.peaks / max(self.images, 1),
        }


def _label_map(inst: Instances, shape: tuple[int, int]) -> np.ndarray:
    """int HxW: 0 background, c + 1 for a pixel of a true instance of class c, -1 in crowd regions."""
    labels = np.zeros(shape, np.int64)
    for mask, c, crowd in zip(inst.masks, inst.labels, inst.is_crowd, strict=True):
        labels[mask] = -1 if crowd else int(c) + 1
    return labels


def _resized(inst: Instances, shape: tuple[int, int]) -> Instances:
    if inst.masks.shape[1:] == shape:
        return inst
    masks = (
        np.stack([resize_mask(m, shape) for m in inst.masks]) if len(inst) else np.zeros((0, *shape), bool)
    )
    return Instances(masks, inst.labels, inst.scores, inst.crowd)


def _score_method(
    tally: _Tally,
    maps: np.ndarray,
    present: list[int],
    inst: Instances,
    proposals: Any,
    model: CamModel,
    peak_config: PeakConfig,
    inference: InferencePeaks,
    image_id: int,
) -> None:
    shape = maps.shape[1:]
    solid = ~inst.is_crowd
    masks, labels = inst.masks[solid], inst.labels[solid]
    for k, c in enumerate(present):
        own = masks[labels == c]
        if len(own):
            tally.pairs += 1
            y, x = np.unravel_index(int(maps[k].argmax()), shape)
            tally.pointed += int(own[:, y, x].any())
    peaks = map_peaks(
        maps, present, model.stride, peak_config, inference.relative_threshold, inference.smooth
    )
    tally.points = tally.points + point_stats(
        [(p.class_index, p.y, p.x) for p in peaks], masks, labels, present
    )
    truth = _label_map(inst, shape)
    best = maps.argmax(axis=0)
    strongest = maps.max(axis=0)
    classes = np.asarray(present)[best] + 1
    counted = truth >= 0
    size = tally.confusion.shape[1]
    for t, threshold in enumerate(THRESHOLDS):
        predicted = np.where(strongest >= threshold, classes, 0)
        pairs = truth[counted] * size + predicted[counted]
        tally.confusion[t] += np.bincount(pairs, minlength=size * size).reshape(size, size)
    seeds = [
        PeakInput(
            p.class_index,
            p.y,
            p.x,
            p.value,
            maps[present.index(p.class_index)] / max(float(maps[present.index(p.class_index)].sum()), 1e-12),
        )
        for p in peaks
    ]
    unused = np.zeros((len(model.classes), 1, 1), np.float32)  # the WISE rule reads no class map
    found = retrieve(proposals, seeds, unused, SEEDED)
    tally.predicted[image_id] = (
        Instances(
            np.stack([f.mask for f in found]),
            np.array([f.class_index for f in found], np.int64),
            np.array([f.score for f in found]),
        )
        if found
        else Instances.empty(*shape)
    )


def score_cams(
    project: Project,
    model: CamModel,
    methods: Sequence[str],
    split: str | None = "val",
    images: int = 50,
    layer: str | None = None,
    size: int | None = None,
    peak_config: PeakConfig | None = None,
    inference: InferencePeaks = INFERENCE_PEAKS,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """The score card (see the module docstring) of ``methods`` with ``model`` (whose classes must be
    the project's) on up to ``images`` tagged images of ``split`` (None: every split) with true
    instances. ``size``: the classifier's input size (None: images as stored); ``peak_config``: its
    peak layer's (default ``PeakConfig()``); ``inference``: the peaks' thresholds and smoothing, and the
    enlargement of each image (``scale``, as the peaks stage's). Returns ``{"methods": {name: figures}, "images": n,
    "split": ..., "layer": ..., "classifier": model.source}``."""
    classes = project.classes()
    if list(model.classes) != classes[: len(model.classes)] or len(model.classes) != len(classes):
        raise BadInputError(
            "classifier",
            f"its classes {model.classes[:5]}... are not the project's {classes[:5]}...: score a project classifier",
        )
    if images < 1:
        raise BadInputError("--images", f"expected at least 1, got {images}")
    gt = ground_truth(project)
    held = gt.instances if gt is not None else {}
    records = [r for r in project.images(split=split) if r.tags and held.get(r.id)][:images]
    if not records:
        where = f"split {split!r}" if split else "the project"
        splits = sorted({r.split for r in project.images() if r.tags and held.get(r.id)})
        hint = (
            f"; splits with them: {', '.join(splits)} (or all)" if splits else ": import a dataset with masks"
        )
        raise BadInputError(
            str(project.root),
            f"has no tagged image with true masks in {where} to score the maps against{hint}",
        )
    peak_config = peak_config or PeakConfig()
    index = {name: i for i, name in enumerate(classes)}
    tallies = {m: _Tally(len(classes)) for m in methods}
    truth: dict[int, Instances] = {}
    truth_all = true_instances(project, records)
    for n, record in enumerate(records):
        image, tensor = prepare_image(project, record, size, inference.scale)
        shape = image.shape[:2]
        inst = truth[record.id] = _resized(truth_all[record.id], shape)
        present = sorted({index[t] for t in record.tags})
        proposals = selective_search(image)
        for method in methods:
            started = time.perf_counter()
            maps = np.stack([class_map(model, tensor, c, method, layer) for c in present])
            tallies[method].seconds += time.perf_counter() - started
            tallies[method].images += 1
            _score_method(
                tallies[method], maps, present, inst, proposals, model, peak_config, inference, record.id
            )
        if progress is not None:
            progress(n + 1, len(records))
    return {
        "methods": {m: {"label": LABELS[m], **tallies[m].figures(truth, len(classes))} for m in methods},
        "images": len(records),
        "split": split,
        "layer": layer or model.default_layer,
        "classifier": model.source,
    }


def best_pointing(card: dict[str, Any]) -> str:
    """The method whose maps point best (highest pointing accuracy, then peak precision)."""
    rows = card["methods"]
    return max(rows, key=lambda m: (np.nan_to_num(rows[m]["pointing"], nan=-1.0), rows[m]["peak_precision"]))


def card_table(card: dict[str, Any]) -> str:
    """The score card as a Markdown table, one row a method."""
    head = "| method | pointing | peak precision | instance recall | mIoU (threshold) | pseudo mAP50 | s / image |"
    rows = [head, "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in card["methods"].values():
        rows.append(
            f"| {row['label']} | {row['pointing']:.3f} | {row['peak_precision']:.3f} | {row['instance_recall']:.3f} "
            f"| {row['miou']:.3f} ({row['threshold']:.2f}) | {row['pseudo_map50']:.3f} | {row['seconds_per_image']:.3f} |"
        )
    return "\n".join(rows)


def run_from_args(args: argparse.Namespace) -> None:
    project = Project(args.project)
    net, classes, extra = load_classifier(project, args.name)
    model = peak_classifier_cams(net, classes, f"classifier {args.name!r}")
    methods = parse_methods(args.methods, model)
    split = None if args.split == "all" else args.split
    with image_progress(args, "cams") as progress:
        card = score_cams(
            project,
            model,
            methods,
            split,
            args.images,
            args.layer,
            extra.get("size"),
            net.config.peaks,
            progress=progress,
        )
    print(card_table(card))
    print(
        f"{card['images']} images ({args.split}), layer {card['layer']}; points best: {LABELS[best_pointing(card)]}"
    )
    if args.out is not None:
        write_json(args.out, card)
        print(f"written: {args.out}")
