"""The CAMs page's comparison of methods: which classifiers it offers, one map a method for one image
and class with the peaks of each map found alike, the time each took; and an uploaded photo read as
the classifier would see it. Pure numpy/torch; the page draws what this returns."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from wsseg.data.images import read_image
from wsseg.errors import BadInputError, WssegError
from wsseg.fileio import write_json
from wsseg.methods.cams import LABELS, class_map, map_peaks, parse_methods
from wsseg.models.backbones import cached_weight_names
from wsseg.models.cam_models import TORCHVISION_CLASSIFIERS, CamModel, peak_classifier_cams, torchvision_cams
from wsseg.models.normalise import to_tensor
from wsseg.models.peaks import Peak, PeakConfig
from wsseg.stages.make_peaks import working_shape
from wsseg.stages.score_cams import run_from_args as score_cams_from_args
from wsseg.stages.train_classifier import load_classifier
from wsseg.store.project import Project
from wsseg.store.weights import WEIGHTS_DIR, weight_files
from wsseg.training.engine import CHECKPOINT
from wsseg.views.cam import PeakSettings
from wsseg.views.overlay import OverlayStyle, greyed, overlay_view

#: Where a project keeps weights files (the Train page's "weights/" folder too).
PROJECT_PREFIX = "project classifier: "
IMAGENET_PREFIX = "ImageNet "


@dataclass(frozen=True)
class OpenedModel:
    """A classifier for the comparison: the model, its input ``size`` (None: images as stored) and its
    peak layer's settings (the defaults for an ImageNet classifier)."""

    model: CamModel
    size: int | None
    peaks: PeakConfig

    @property
    def is_project(self) -> bool:
        """Whether its classes are the project's (a score card can be made)."""
        return self.model.crm is not None


def classifier_options(project: Project) -> list[str]:
    """The classifiers the page offers, in words: the project's finished classifier runs whose
    checkpoint is there, newest first, then each torchvision ImageNet classifier with a weight name in
    torch's cache or a file in the project's ``weights/`` folder."""
    names: list[str] = []
    for run in project.runs("classifier"):
        name = run.config.get("name") or "classifier"
        if (
            run.status == "done"
            and name not in names
            and (project.root / "checkpoints" / name / CHECKPOINT).is_file()
        ):
            names.append(name)
    if not names and (project.root / "checkpoints" / "classifier" / CHECKPOINT).is_file():
        names.append("classifier")  # a shipped checkpoint (the demo's) has no training run
    options = [PROJECT_PREFIX + n for n in names]
    files = [p.name for p in weight_files(project)]
    for arch in TORCHVISION_CLASSIFIERS:
        for weights in [*cached_weight_names(arch), *files]:
            options.append(f"{IMAGENET_PREFIX}{arch} · {weights}")
    return options


def open_model(project: Project, option: str) -> OpenedModel:
    """The classifier of ``option`` (one of ``classifier_options``); a weights file that does not fit
    its network is a ``BadInputError`` naming the file."""
    if option.startswith(PROJECT_PREFIX):
        name = option.removeprefix(PROJECT_PREFIX)
        net, classes, extra = load_classifier(project, name)
        return OpenedModel(
            peak_classifier_cams(net, classes, f"classifier {name!r}"), extra.get("size"), net.config.peaks
        )
    if not option.startswith(IMAGENET_PREFIX) or " · " not in option:
        raise BadInputError(f"classifier={option!r}", "not one of the classifiers this page offers")
    arch, weights = option.removeprefix(IMAGENET_PREFIX).split(" · ", 1)
    local = project.root / WEIGHTS_DIR / weights
    return OpenedModel(torchvision_cams(arch, local if local.is_file() else weights), None, PeakConfig())


def read_upload(data: bytes, name: str, size: int | None) -> np.ndarray:
    """An uploaded photo as the classifier sees it: HxWx3 uint8, resized to the classifier's training
    ``size`` when it had one, and at most the working size on its longer side. A file that is not an
    image is a ``BadInputError`` naming it."""
    image = read_image(data, name)
    if size is not None:
        return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    height, width = working_shape(*image.shape[:2])
    if (height, width) != image.shape[:2]:
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    return image


@dataclass(frozen=True)
class MethodMap:
    """One method's map of one image and class: ``heat`` float32 HxW in [0, 1] (None with ``error``),
    its ``peaks`` (strongest first), the ``seconds`` it took to compute."""

    method: str
    label: str
    heat: np.ndarray | None
    peaks: list[Peak]
    seconds: float
    error: str = ""


def _peak_config(opened: OpenedModel, settings: PeakSettings) -> PeakConfig:
    return PeakConfig(
        upsample=opened.peaks.upsample, window=settings.window, peak_filter=settings.peak_filter
    )


def method_map(
    opened: OpenedModel, image: np.ndarray, class_index: int, method: str, layer: str | None
) -> MethodMap:
    """``method``'s map of ``image`` (HxWx3 uint8) for ``class_index``, read at ``layer``, without its
    peaks (``with_peaks`` adds them: the page caches the map and finds the peaks again when a peak
    setting moves). A method that fails says why in ``error`` instead of stopping the others."""
    tensor = to_tensor(image)[None]
    started = time.perf_counter()
    try:
        heat = class_map(opened.model, tensor, class_index, method, layer)
    except (WssegError, RuntimeError, ValueError) as exc:
        return MethodMap(method, LABELS[method], None, [], time.perf_counter() - started, str(exc))
    return MethodMap(method, LABELS[method], heat, [], time.perf_counter() - started)


def with_peaks(found: MethodMap, opened: OpenedModel, class_index: int, settings: PeakSettings) -> MethodMap:
    """``found`` with the peaks of its map found with ``settings`` on the classifier's grid
    (``map_peaks``), as every method's are."""
    if found.heat is None:
        return found
    peaks = map_peaks(
        found.heat[None],
        [class_index],
        opened.model.stride,
        _peak_config(opened, settings),
        settings.relative_threshold,
        settings.smooth,
    )
    return replace(found, peaks=peaks)


def top_classes(opened: OpenedModel, image: np.ndarray, count: int = 5) -> list[tuple[int, float]]:
    """The ``count`` classes the classifier scores highest on ``image``: (class index, score), best first."""
    with torch.inference_mode():
        scores = opened.model.network(to_tensor(image)[None])[0].float()
    order = torch.argsort(scores, descending=True)[:count]
    return [(int(k), float(scores[k])) for k in order]


def layer_channels(opened: OpenedModel, layer: str) -> int:
    """Channels of ``layer``'s output (what Score-CAM runs one forward pass for each of), measured on a
    small blank image."""
    shapes: list[tuple[int, ...]] = []
    handle = opened.model.layer(layer).register_forward_hook(
        lambda _m, _i, out: shapes.append(tuple(out.shape))
    )
    try:
        with torch.inference_mode():
            opened.model.network(torch.zeros(1, 3, 64, 64))
    finally:
        handle.remove()
    return shapes[-1][1]


def photo_maps(
    opened: OpenedModel, image: np.ndarray, class_name: str | None, methods: list[str], layer: str | None
) -> tuple[int, list[MethodMap]]:
    """(class index, every method's map with its peaks) of one photo: ``class_name``'s (None: the
    class the classifier scores highest), the peaks found with the page's default settings."""
    classes = opened.model.classes
    if class_name is None:
        class_index = top_classes(opened, image, 1)[0][0]
    elif class_name in classes:
        class_index = classes.index(class_name)
    else:
        raise BadInputError(
            f"--class {class_name!r}", f"not a class of this classifier (first: {', '.join(classes[:5])}...)"
        )
    found = [
        with_peaks(method_map(opened, image, class_index, m, layer), opened, class_index, PeakSettings())
        for m in methods
    ]
    return class_index, found


def run_from_args(args: argparse.Namespace) -> None:
    """``wsseg cams``: the score card of a project (``wsseg.stages.score_cams``), or with ``--image`` every
    method's map of one photo, written as pictures beside a JSON of their times and peaks."""
    if args.image is None:
        if args.project is None:
            raise BadInputError("--project", "is needed for a score card (or --image for one photo's maps)")
        score_cams_from_args(args)
        return
    if args.weights is not None:
        opened = OpenedModel(torchvision_cams(args.arch, args.weights), None, PeakConfig())
    elif args.project is not None:
        opened = open_model(Project(args.project), PROJECT_PREFIX + args.name)
    else:
        raise BadInputError(
            "--image", "needs a classifier: --project DIR (its classifier) or --weights (ImageNet)"
        )
    path = Path(args.image)
    if not path.is_file():
        raise BadInputError(str(path), "no such image file")
    image = read_upload(path.read_bytes(), str(path), opened.size)
    methods = parse_methods(args.methods, opened.model)
    class_index, found = photo_maps(opened, image, args.class_name, methods, args.layer)
    out = Path(args.out or "cams-out")
    out.mkdir(parents=True, exist_ok=True)
    backdrop = greyed(image)
    summary: dict[str, Any] = {
        "image": str(path),
        "classifier": opened.model.source,
        "class": opened.model.classes[class_index],
        "methods": {},
    }
    for one in found:
        row: dict[str, Any] = {"label": one.label, "seconds": one.seconds, "error": one.error}
        if one.heat is not None:
            picture = overlay_view(backdrop, one.heat, OverlayStyle(), [(p.y, p.x) for p in one.peaks[:20]])
            cv2.imwrite(str(out / f"{one.method}.png"), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
            row["peaks"] = [[p.y, p.x, round(p.value, 4)] for p in one.peaks]
        summary["methods"][one.method] = row
        print(f"{one.label:28s} {one.seconds:7.3f} s  {len(one.peaks):3d} peak(s)  {one.error}")
    write_json(out / "maps.json", summary)
    print(f"class {summary['class']!r}; maps written to {out}/ (one PNG a method, maps.json)")
