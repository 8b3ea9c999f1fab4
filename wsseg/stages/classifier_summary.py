"""What a trained classifier learnt, class by class: how well its score ranks the images of each class
(average precision), how many images carry the class, in how many it predicts the class, and how many
peaks its map of the class gives there.

``train_classifier`` stores the summary in its run's metrics (``class_summary``), the command line prints
it (``summary_lines``) and the app's Train and CAMs pages show it with ``never_predicted_warning``: a
classifier that never predicts some classes gives them no peak, so no pseudo mask, and that is better
said after training than found out three stages later. Pure numpy/torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from wsseg.errors import BadInputError
from wsseg.methods.metrics import average_precision
from wsseg.models.classifier import PeakClassifier
from wsseg.models.normalise import to_tensor
from wsseg.models.peaks import find_peaks
from wsseg.stages.recipes import INFERENCE_PEAKS, InferencePeaks

#: At most this many images are scored (the first ones): enough for a per-class AP, seconds on a CPU.
SUMMARY_IMAGES = 256


def summarise_classifier(
    model: PeakClassifier,
    images: np.ndarray,
    targets: np.ndarray,
    classes: Sequence[str],
    split: str,
    peaks: InferencePeaks = INFERENCE_PEAKS,
    batch_size: int = 16,
) -> dict[str, Any]:
    """The per-class summary of ``model`` on NxHxWx3 uint8 ``images`` with NxC {0, 1} ``targets``.

    Returns a JSON-able dict: ``split`` (the images' split, in words), ``images`` (N) and ``per_class``:
    class name -> ``images`` (tagged with it), ``ap`` (average precision of its logit against the tags,
    None without a tagged image), ``predicted`` (images where its logit is above 0, i.e. probability
    above 0.5) and ``peaks`` (peaks of its map in those images, with the inference peak settings
    ``peaks``). The model is put in eval mode.
    """
    if images.ndim != 4 or images.shape[-1] != 3 or targets.shape != (len(images), len(classes)):
        raise BadInputError(
            "classifier summary",
            f"expected NxHxWx3 images and Nx{len(classes)} targets, got {images.shape} and {targets.shape}",
        )
    model.eval()
    device = next(model.parameters()).device
    logits = np.zeros((len(images), len(classes)), np.float64)
    peak_counts = np.zeros(len(classes), np.int64)
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            batch = torch.stack([to_tensor(image) for image in chunk]).to(device)
            out = model(batch)
            scores = out["logits"].float().cpu()
            logits[start : start + len(chunk)] = scores.numpy()
            for crm, score in zip(out["crm"].float().cpu(), scores, strict=True):
                found = find_peaks(
                    crm,
                    model.config.peaks,
                    class_threshold=0.0,
                    class_scores=score,
                    peak_threshold=peaks.peak_threshold,
                    relative_threshold=peaks.relative_threshold,
                    smooth=peaks.smooth,
                    stride=model.stride,
                    image_size=chunk.shape[1:3],
                )
                for peak in found:
                    peak_counts[peak.class_index] += 1
    tagged = targets.astype(bool)
    per_class = {}
    for c, name in enumerate(classes):
        ap = average_precision(logits[:, c], tagged[:, c])
        per_class[name] = {
            "images": int(tagged[:, c].sum()),
            "ap": None if math.isnan(ap) else round(ap, 4),
            "predicted": int((logits[:, c] > 0).sum()),
            "peaks": int(peak_counts[c]),
        }
    return {"split": split, "images": len(images), "per_class": per_class}


def never_predicted(summary: Mapping[str, Any]) -> list[str]:
    """The classes of a summary that carry images but are predicted in none of them."""
    return [
        name
        for name, row in summary.get("per_class", {}).items()
        if row["predicted"] == 0 and row["images"] > 0
    ]


def never_predicted_warning(summary: Mapping[str, Any]) -> str | None:
    """A plain sentence when some tagged classes are never predicted (None when every one is): they get
    no peak, so no pseudo mask; the peaks all go to the classes that are predicted."""
    missing = never_predicted(summary)
    if not missing:
        return None
    rows = summary["per_class"]
    with_peaks = [name for name, row in rows.items() if row["peaks"] > 0]
    if len(with_peaks) == 1:
        where = f"every peak is '{with_peaks[0]}'"
    elif with_peaks:
        where = "the peaks all go to " + ", ".join(f"'{name}'" for name in with_peaks)
    else:
        where = "it gives no peak at all"
    return (
        f"The classifier never predicts: {', '.join(missing)} — {where} "
        f"(on {summary['images']} {summary['split']} image(s)). These classes will get no peak and no "
        "pseudo mask: train longer, with more images of them, or check their tags."
    )


def summary_rows(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per class for a table: class, images tagged, AP, images predicted, peaks."""
    return [
        {
            "class": name,
            "images tagged": row["images"],
            f"AP ({summary['split']})": row["ap"],
            "images predicted": row["predicted"],
            "peaks": row["peaks"],
        }
        for name, row in summary.get("per_class", {}).items()
    ]


def summary_lines(summary: Mapping[str, Any]) -> list[str]:
    """The summary as fixed-width text lines for the command line, the warning last when there is one."""
    rows = summary.get("per_class", {})
    width = max([len("class"), *(len(name) for name in rows)])
    lines = [
        f"what the classifier learnt, per class ({summary['images']} {summary['split']} image(s)):",
        f"  {'class':<{width}}  images  AP     predicted  peaks",
    ]
    for name, row in rows.items():
        ap = "  -  " if row["ap"] is None else f"{row['ap']:.3f}"
        lines.append(f"  {name:<{width}}  {row['images']:>6}  {ap}  {row['predicted']:>9}  {row['peaks']:>5}")
    warning = never_predicted_warning(summary)
    if warning:
        lines.append(f"warning: {warning}")
    return lines
