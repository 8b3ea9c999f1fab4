"""Settings of every pipeline step that work on whatever a user imported, chosen from its images.

The benchmark's recipes (``wsseg.stages.recipes``) were measured on datasets of known size; a user's
project can hold 8 photos of 4000 px or 5,000 thumbnails. ``project_recipe`` scales the same recipes to
the project: the training size from the images' short sides, each batch no larger than the training
split, and enough epochs that a small project still takes the optimiser through a useful number of
steps. The app's pipeline panel shows these values, editable, and starts its jobs with them; each
step's dict is that job's options (``wsseg.jobs.launch.OPTIONS``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from wsseg.methods.proposals import ProposalConfig
from wsseg.methods.pseudo_masks import RetrievalConfig
from wsseg.stages.recipes import INFERENCE_PEAKS, classifier_schedule, maskrcnn_schedule
from wsseg.store.project import ImageRecord

#: The training size's range, pixels: below 64 the small backbone's stride-8 maps have 8 cells a side;
#: above 256 a CPU step of the classifier takes seconds (the benchmark trains at 160).
SIZE_RANGE = (64, 256)
#: Steps each training aims at, and its epoch range. Classifier: from scratch it learns nothing
#: measurable before a few hundred steps (docs/benchmark.md, "The quick run"). Mask R-CNN and the
#: estimator start from the classifier's layers and need fewer.
TARGET_STEPS = {"classifier": 300, "maskrcnn": 200, "ple": 150}
EPOCH_RANGE = {"classifier": (5, 200), "maskrcnn": (2, 100), "ple": (2, 100)}
PLE_BATCH = 16
#: Below this many images the per-image steps run in one process: starting a pool of workers (each
#: importing torch) took longer than the work on a loaded 2-core machine.
POOL_FROM = 64


def training_size(records: Sequence[ImageRecord]) -> int:
    """The median short side of the images, rounded down to a multiple of 32 and clamped to
    ``SIZE_RANGE`` (the lower bound when there are no images)."""
    if not records:
        return SIZE_RANGE[0]
    side = statistics.median(min(r.width, r.height) for r in records)
    return int(min(max(side // 32 * 32, SIZE_RANGE[0]), SIZE_RANGE[1]))


def schedule(stage: str, images: int, batch_size: int) -> tuple[int, int]:
    """(epochs, batch size) of a training ``stage`` on ``images`` training images: the recipe's batch
    size, no larger than the images; epochs so that ``TARGET_STEPS[stage]`` steps are taken, within
    ``EPOCH_RANGE[stage]``."""
    batch = max(1, min(batch_size, images))
    steps_per_epoch = max(1, math.ceil(images / batch))
    low, high = EPOCH_RANGE[stage]
    return min(max(math.ceil(TARGET_STEPS[stage] / steps_per_epoch), low), high), batch


def project_recipe(
    records: Sequence[ImageRecord], has_val: bool = False, small_classifier: bool = True
) -> dict[str, dict[str, Any]]:
    """Each pipeline step's options for a project whose images are ``records``: step -> options.

    ``has_val``: the project has a ``val`` split (evaluation then scores it, else every image).
    ``small_classifier``: Mask R-CNN and the estimator start from the classifier's layers (only the
    small backbone's fit them); run names are left to the caller."""
    train = [r for r in records if r.split == "train"]
    size = training_size(train or records)
    epochs, batch = schedule("classifier", len(train), classifier_schedule(1).batch_size)
    mrcnn_epochs, mrcnn_batch = schedule("maskrcnn", len(train), maskrcnn_schedule(1).batch_size)
    ple_epochs, ple_batch = schedule("ple", len(train), PLE_BATCH)
    pool = {"workers": 1} if len(records) < POOL_FROM else {}
    return {
        "classifier": {"epochs": epochs, "batch_size": batch, "size": size},
        "peaks": {"scale": INFERENCE_PEAKS.scale},
        "proposals": {"max_proposals": ProposalConfig.max_proposals, **pool},
        "pseudo_masks": {"strategy": RetrievalConfig.strategy, **pool},
        "maskrcnn": {
            "epochs": mrcnn_epochs,
            "batch_size": mrcnn_batch,
            "image_size": size,
            "backbone": "small" if small_classifier else "mobilenet_v3",
        },
        "ple": {"epochs": ple_epochs, "batch_size": ple_batch, "size": size},
        "evaluate": {"split": "val" if has_val else "all"},
    }
