"""Two training runs side by side: their settings and metrics, and one image through both models.

Pure numpy/torch (the Train page draws what these return). A run's model is its checkpoint folder
``checkpoints/<name>/``, which a later run of the same name overwrites: such a run still compares by
its recorded settings and metrics, but has no picture.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wsseg.data.images import read_image
from wsseg.data.voc import voc_palette
from wsseg.models import maskrcnn
from wsseg.stages import evaluate_ple
from wsseg.stages.make_peaks import prepare_image
from wsseg.stages.train_classifier import load_classifier
from wsseg.stages.train_maskrcnn import load_maskrcnn
from wsseg.store.project import ImageRecord, Project, RunRecord
from wsseg.training.engine import CHECKPOINT
from wsseg.views.overlay import blend, crm_to_pixels, normalize

TRAINED_STAGES: dict[str, str] = {
    "classifier": "Classifier (CAMs)",
    "maskrcnn": "Mask R-CNN",
    "ple": "Pixel-label estimator",
}
SCORE_THRESHOLD = 0.5  # Mask R-CNN instances drawn


@dataclass(frozen=True)
class ModelView:
    """One image through one run's model: ``picture`` HxWx3 uint8 (the image with the model's output
    drawn on it) and ``caption``, what was drawn, in words."""

    picture: np.ndarray
    caption: str


def finished_runs(project: Project, stage: str) -> list[RunRecord]:
    """The runs of ``stage`` that ended (done or stopped), newest first."""
    return [r for r in project.runs(stage) if r.status in ("done", "stopped")]


def _flat(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def compare_table(a: RunRecord, b: RunRecord) -> list[dict[str, Any]]:
    """Rows (``what``, ``A``, ``B``, ``differs``) over the two runs' status, training settings,
    model settings and metrics (nested keys dotted, values as text)."""
    left = {"status": a.status, **_flat(a.config, "config."), **_flat(a.metrics, "metric.")}
    right = {"status": b.status, **_flat(b.config, "config."), **_flat(b.metrics, "metric.")}
    keys = list(dict.fromkeys([*left, *right]))
    keys.sort(key=lambda k: (not k.startswith("metric."), not k.startswith("config.train."), k))

    def text(value: Any) -> str:
        return "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)

    return [
        {"what": k, "A": text(left.get(k)), "B": text(right.get(k)), "differs": left.get(k) != right.get(k)}
        for k in keys
    ]


def run_checkpoint(project: Project, run: RunRecord) -> Path | None:
    """The run's checkpoint file when it still holds this run's model: it exists and no later run
    of the stage trained into the same folder."""
    name = run.config.get("name")
    if not name:
        return None
    path = project.root / "checkpoints" / str(name) / CHECKPOINT
    later = [r for r in project.runs(run.stage) if r.id > run.id and r.config.get("name") == name]
    return path if path.is_file() and not later else None


def _classifier_view(project: Project, name: str, record: ImageRecord) -> ModelView:
    model, classes, extra = load_classifier(project, name)
    image, tensor = prepare_image(project, record, extra.get("size"))
    with torch.inference_mode():
        out = model(tensor)
    scores = out["logits"][0].float().numpy()
    tagged = [k for k, c in enumerate(classes) if c in record.tags]
    c = tagged[0] if tagged else int(np.argmax(scores))
    heat = normalize(crm_to_pixels(out["crm"][0, c].float().numpy(), model.stride, image.shape[:2]))
    return ModelView(blend(image, heat, 0.55, "jet"), f"CAM of {classes[c]} · score {scores[c]:+.2f}")


def _maskrcnn_view(project: Project, name: str, record: ImageRecord) -> ModelView:
    model, classes, _ = load_maskrcnn(project, name)
    image = read_image(project.image_path(record), record.filename)
    found = maskrcnn.predict(model, [image])[0]
    keep = np.flatnonzero(found.scores >= SCORE_THRESHOLD)
    picture = image.astype(np.float32)
    palette = voc_palette()[1:].astype(np.float32)
    for k in keep[::-1]:  # best drawn last, on top
        mask = found.masks[k]
        picture[mask] = 0.45 * picture[mask] + 0.55 * palette[found.labels[k] % len(palette)]
    listed = ", ".join(f"{classes[found.labels[k]]} {found.scores[k]:.2f}" for k in keep[:6])
    caption = f"{len(keep)} instance(s) scored >= {SCORE_THRESHOLD}" + (f": {listed}" if listed else "")
    return ModelView(picture.astype(np.uint8), caption)


def _ple_view(project: Project, name: str, record: ImageRecord) -> ModelView:
    model, extra = evaluate_ple.load_ple(project, name)
    image = read_image(project.image_path(record), record.filename)
    labels, _ = evaluate_ple.predict(model, image)
    colours = voc_palette()[labels].astype(np.float32)
    picture = (0.5 * image.astype(np.float32) + 0.5 * colours).astype(np.uint8)
    names = extra.get("labels", [])
    present = [names[v] if v < len(names) else str(v) for v in np.unique(labels)]
    return ModelView(picture, "pixel labels: " + ", ".join(present))


VIEWS = {"classifier": _classifier_view, "maskrcnn": _maskrcnn_view, "ple": _ple_view}


def through_model(project: Project, run: RunRecord, record: ImageRecord) -> ModelView | None:
    """``record`` through ``run``'s model (CAM of its first tagged class, Mask R-CNN instances, or
    pixel labels); None when the run's checkpoint no longer holds its model."""
    if run.stage not in VIEWS or run_checkpoint(project, run) is None:
        return None
    return VIEWS[run.stage](project, str(run.config["name"]), record)
