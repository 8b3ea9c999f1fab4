"""The maps of one image as the app shows them: CRMs, class scores, peaks and peak response maps.

Maps are read from the newest finished ``peaks`` run that holds the image (``make_peaks``'s npz) and
computed with the trained classifier otherwise. Peaks are found again on those CRMs with the viewer's
settings (cheap: no network), and the PRM of a chosen peak is read from the artifact when the run
stored that peak with the same method, else computed with the classifier. Pure numpy/torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wsseg.errors import BadInputError
from wsseg.methods.prm import PRMConfig, peak_response_maps
from wsseg.models.classifier import PeakClassifier
from wsseg.models.normalise import to_tensor
from wsseg.models.peaks import Peak, PeakConfig, find_peaks
from wsseg.stages.make_peaks import STAGE as PEAKS_STAGE
from wsseg.stages.make_peaks import load_result, prepare_image
from wsseg.stages.recipes import INFERENCE_PEAKS
from wsseg.stages.train_classifier import STAGE as TRAIN_STAGE
from wsseg.stages.train_classifier import load_classifier
from wsseg.store.project import ImageRecord, Project
from wsseg.training.engine import CHECKPOINT
from wsseg.views.overlay import crm_to_pixels, normalize


@dataclass(frozen=True)
class Classifier:
    """A trained classifier: the model (eval mode, CPU), its class names, its input ``size`` (None:
    images as stored) and the checkpoint file."""

    model: PeakClassifier
    classes: list[str]
    size: int | None
    checkpoint: Path


def classifier_name(project: Project) -> str:
    """The name of the project's newest finished classifier run whose checkpoint is there (a new
    training gets a new name, ``classifier-2``...), else "classifier"."""
    for run in project.runs("classifier"):
        name = run.config.get("name")
        if run.status == "done" and name and (project.root / "checkpoints" / name / CHECKPOINT).is_file():
            return str(name)
    return "classifier"


def checkpoint_path(project: Project, name: str | None = None) -> Path:
    """The checkpoint of classifier ``name`` (None: ``classifier_name``'s)."""
    return project.root / "checkpoints" / (name or classifier_name(project)) / CHECKPOINT


def open_classifier(project: Project, name: str | None = None) -> Classifier | None:
    """The project's trained classifier ``name`` (None: the newest, ``classifier_name``), or None when
    it has not been trained."""
    name = name or classifier_name(project)
    path = checkpoint_path(project, name)
    if not path.is_file():
        return None
    model, classes, extra = load_classifier(project, name)
    return Classifier(model, classes, extra.get("size"), path)


@dataclass(frozen=True)
class ImageMaps:
    """One image's maps.

    image: HxWx3 uint8, the image as the classifier saw it.
    crm: float32 Cxhxw raw class response maps (logit scale); class_scores: float32 C (logits).
    stride: the backbone's output stride; upsample: its peak layer's factor (``PeakConfig.upsample``).
    source: where the maps come from, in words ("peaks run 3" or "computed by the classifier").
    stored_peaks: float32 Kx4 (class index, y, x, value) and stored_prms: float32 KxHxW, the peaks
    run's peaks and PRMs (empty when computed); stored_method: that run's PRM method (or None).
    """

    image: np.ndarray
    crm: np.ndarray
    class_scores: np.ndarray
    stride: int
    upsample: int
    source: str
    stored_peaks: np.ndarray
    stored_prms: np.ndarray
    stored_method: str | None = None


@dataclass(frozen=True)
class PeakSettings:
    """The viewer's peak search (``wsseg.models.peaks.find_peaks``): ``window`` (odd), ``peak_filter``
    ("median", "mean", "none"), ``relative_threshold`` in [0, 1] of the class map's maximum,
    ``peak_threshold`` (minimum raw response) and ``smooth`` (Gaussian std in CRM cells); None turns a
    filter off. Defaults: the model's peak layer (``PeakConfig``) and the recipe's inference peaks
    (``wsseg.stages.recipes.INFERENCE_PEAKS``)."""

    window: int = PeakConfig.window
    peak_filter: str | float = PeakConfig.peak_filter
    relative_threshold: float | None = INFERENCE_PEAKS.relative_threshold
    peak_threshold: float | None = INFERENCE_PEAKS.peak_threshold
    smooth: float | None = INFERENCE_PEAKS.smooth


def stored_peaks_file(project: Project, record: ImageRecord) -> tuple[Path, dict] | None:
    """(npz path, run config) of the newest finished peaks run holding ``record``, or None."""
    for run in project.runs(PEAKS_STAGE):
        path = project.artifact(PEAKS_STAGE, run.id, record.id, ".npz")
        if run.status == "done" and path.is_file():
            return path, {"run": run.id, **run.config}
    return None


def image_maps(project: Project, record: ImageRecord, classifier: Classifier | None) -> ImageMaps | None:
    """The maps of ``record``: from the newest peaks run, else computed; None without either."""
    size = classifier.size if classifier else None
    stride = classifier.model.stride if classifier else None
    upsample = classifier.model.config.peaks.upsample if classifier else PeakConfig().upsample
    stored = stored_peaks_file(project, record)
    # a run made on enlarged images (``wsseg peaks --scale``) is shown on the image it saw
    scale = float(stored[1].get("scale", 1.0)) if stored is not None else 1.0
    image, tensor = prepare_image(project, record, size, scale)
    if stored is not None:
        path, config = stored
        data = load_result(path)
        crm = data["crm"]
        enlarged = f" (images enlarged {scale:g}x)" if scale != 1.0 else ""
        return ImageMaps(
            image=image,
            crm=crm,
            class_scores=data["class_scores"],
            stride=stride or max(1, round(image.shape[0] / crm.shape[1])),
            upsample=upsample,
            source=f"peaks run {config['run']}{enlarged}",
            stored_peaks=data["peaks"].reshape(-1, 4),
            stored_prms=data["prms"],
            stored_method=config.get("prm", {}).get("method"),
        )
    if classifier is None:
        return None
    with torch.inference_mode():
        out = classifier.model(tensor)
    return ImageMaps(
        image=image,
        crm=out["crm"][0].float().numpy(),
        class_scores=out["logits"][0].float().numpy(),
        stride=classifier.model.stride,
        upsample=upsample,
        source="computed by the classifier (no peaks run holds this image)",
        stored_peaks=np.zeros((0, 4), np.float32),
        stored_prms=np.zeros((0, *image.shape[:2]), np.float32),
    )


def class_heat(maps: ImageMaps, class_index: int, shared: bool) -> np.ndarray:
    """float32 HxW in [0, 1]: the class's CRM at pixel resolution, over its own maximum or over the
    maximum of every class's map (``shared``: absent classes then look as weak as they are)."""
    pixels = crm_to_pixels(maps.crm[class_index], maps.stride, maps.image.shape[:2])
    return normalize(pixels, float(maps.crm.max()) if shared else None)


def _peak_config(maps: ImageMaps, settings: PeakSettings) -> PeakConfig:
    return PeakConfig(upsample=maps.upsample, window=settings.window, peak_filter=settings.peak_filter)


def class_peaks(maps: ImageMaps, settings: PeakSettings, class_index: int) -> list[Peak]:
    """Peaks of class ``class_index`` on the cached CRMs with the viewer's settings, strongest first."""
    peaks = find_peaks(
        maps.crm,
        _peak_config(maps, settings),
        peak_threshold=settings.peak_threshold,
        relative_threshold=settings.relative_threshold,
        smooth=settings.smooth,
        stride=maps.stride,
        image_size=maps.image.shape[:2],
    )
    return [p for p in peaks if p.class_index == class_index]


#: The most peaks the viewer draws and lists, strongest first: past a few dozen the numbered markers
#: cover the image (a 1-cell window finds hundreds of peaks on a smooth map).
MAX_DRAWN_PEAKS = 50


@dataclass(frozen=True)
class ShownPeaks:
    """The peaks the viewer draws and lists: ``peaks`` (the strongest, at most the cap, strongest
    first; peak k is numbered k + 1 on the image, in the list and in the PRM panel) out of ``total``
    found; ``note`` says so in words when some are left out (else "")."""

    peaks: list[Peak]
    total: int
    note: str


def shown_peaks(peaks: list[Peak], limit: int = MAX_DRAWN_PEAKS) -> ShownPeaks:
    """The first ``limit`` of ``peaks`` (strongest first, as ``class_peaks`` returns them)."""
    if limit < 1:
        raise BadInputError("limit", f"must be at least 1, got {limit}")
    kept = list(peaks[:limit])
    note = (
        f"showing the {limit} strongest of {len(peaks)} peaks (a wider window or a higher threshold "
        "finds fewer)"
        if len(peaks) > limit
        else ""
    )
    return ShownPeaks(kept, len(peaks), note)


def peak_label(number: int, peak: Peak) -> str:
    """The list's text for the peak numbered ``number`` (1-based, as on the image)."""
    return f"{number} · ({peak.y}, {peak.x}) · {peak.value:+.2f}"


def classifier_summary(project: Project, name: str = "classifier") -> dict[str, Any] | None:
    """The per-class summary (``wsseg.stages.classifier_summary``) of the newest finished training
    of classifier ``name``, or None when that run recorded none (trained before summaries existed,
    or shipped with the demo)."""
    for run in project.runs(TRAIN_STAGE):
        if run.status == "done" and run.config.get("name", "classifier") == name:
            return run.metrics.get("class_summary")
    return None


def peak_prm(
    maps: ImageMaps,
    peak: Peak,
    settings: PeakSettings,
    classifier: Classifier | None,
    method: str = INFERENCE_PEAKS.method,
) -> tuple[np.ndarray | None, str]:
    """(PRM of ``peak`` as float32 HxW summing to 1, where it came from); (None, why) when unavailable.

    The stored PRM is used when the peaks run stored this peak (same class and pixel) with
    ``method``; otherwise the classifier computes the PRMs of the viewer's peaks (one batched
    backward) and the one at the same map cell is returned.
    """
    if maps.stored_method == method:
        rows = maps.stored_peaks
        hit = np.flatnonzero(
            (rows[:, 0] == peak.class_index) & (rows[:, 1] == peak.y) & (rows[:, 2] == peak.x)
        )
        if len(hit):
            return maps.stored_prms[hit[0]], f"stored in {maps.source}"
    if classifier is None:
        return None, "no trained classifier to compute it (train the classifier first)"
    tensor = to_tensor(maps.image)[None]
    cfg = PRMConfig(
        method=method,
        class_threshold=None,  # the viewer shows every class's peaks, whatever its score
        peak_threshold=settings.peak_threshold,
        relative_threshold=settings.relative_threshold,
        smooth=settings.smooth,
        peaks=_peak_config(maps, settings),
    )
    result = peak_response_maps(classifier.model, tensor, cfg)
    for k, other in enumerate(result.peaks):
        if (other.class_index, other.map_y, other.map_x) == (peak.class_index, peak.map_y, peak.map_x):
            return result.maps[k], "computed by the classifier"
    return None, "the classifier's own maps have no peak there (the stored CRMs differ slightly)"
