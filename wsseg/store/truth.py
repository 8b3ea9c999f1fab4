"""Ground truth of a project: its true instances per split, and any predictor scored against them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from wsseg.data.images import read_image
from wsseg.errors import BadInputError
from wsseg.methods.mask_map import mask_map, pointing_and_counting
from wsseg.store.importer import ground_truth
from wsseg.store.project import Project
from wsseg.structures import Instances


def truth_instances(project: Project, split: str | None = "val") -> tuple[dict[int, Instances], list[str]]:
    """The ground-truth instances of a project split's images (keyed by image id), and the class names.

    Raises BadInputError when the project has no ground truth
    or no image of that split."""
    gt = ground_truth(project)
    if gt is None:
        raise BadInputError(
            str(project.root), "has no ground truth (ground_truth.json): nothing to evaluate against"
        )
    classes = project.classes()
    index = {name: k for k, name in enumerate(classes)}
    truth: dict[int, Instances] = {}
    for record in project.images(split=split):
        if record.id not in gt.instances:
            continue  # an image imported without masks
        insts = gt.instances[record.id]
        masks = (
            np.stack([inst.mask for inst in insts])
            if insts
            else np.zeros((0, record.height, record.width), bool)
        )
        labels = np.array([index[inst.category] for inst in insts], np.int64)
        truth[record.id] = Instances(masks, labels, np.ones(len(insts)))
    if not truth:
        raise BadInputError(str(project.root), f"has no ground truth for split {split!r}")
    return truth, classes


def evaluate_split(
    project: Project,
    predict: Callable[[list[np.ndarray]], list[Instances]],
    split: str | None = "val",
    score_threshold: float = 0.5,
    batch_size: int = 16,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[dict[str, Any], dict[int, Instances]]:
    """Run ``predict`` (HxWx3 uint8 images -> their Instances) over the split's images with ground
    truth; return (metrics, predictions by image id). Metrics: ``map25``/``map50``/``map75``, per class
    (``per_class_map50`` ...: class name -> AP, None without truth), ``pointing_accuracy``, ``count_mae``
    and ``images``. ``progress(done, total)`` is called after every batch."""
    truth, classes = truth_instances(project, split)
    ids = list(truth)
    predictions: dict[int, Instances] = {}
    for start in range(0, len(ids), batch_size):
        chunk = ids[start : start + batch_size]
        images = []
        for image_id in chunk:
            record = project.image(image_id)
            images.append(read_image(project.image_path(record), record.filename))
        predictions.update(zip(chunk, predict(images), strict=True))
        if progress is not None:
            progress(len(predictions), len(ids))
    metrics: dict[str, Any] = mask_map(truth, predictions, len(classes)).as_dict(classes)
    metrics.update(pointing_and_counting(truth, predictions, score_threshold))
    metrics["images"] = len(ids)
    return metrics, predictions
