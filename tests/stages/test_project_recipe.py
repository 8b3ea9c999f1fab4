"""``wsseg.stages.project_recipe``: settings chosen from a project's images: the training size from the
short sides, batches no larger than the images, epochs that reach the target number of steps."""

from __future__ import annotations

import math

import pytest

from wsseg.stages.project_recipe import (
    EPOCH_RANGE,
    SIZE_RANGE,
    TARGET_STEPS,
    project_recipe,
    schedule,
    training_size,
)
from wsseg.store.project import ImageRecord


def _records(sizes: list[tuple[int, int]], split: str = "train") -> list[ImageRecord]:
    return [ImageRecord(k, f"{k}.png", "", w, h, split, ()) for k, (w, h) in enumerate(sizes)]


def test_the_training_size_is_the_median_short_side_as_a_multiple_of_32_within_range() -> None:
    # Short sides 80, 480, 200: median 200 -> 192.
    assert training_size(_records([(100, 80), (640, 480), (300, 200)])) == 192
    assert training_size(_records([(40, 30)] * 3)) == SIZE_RANGE[0]
    assert training_size(_records([(4000, 3000)] * 3)) == SIZE_RANGE[1]
    assert training_size([]) == SIZE_RANGE[0]


@pytest.mark.parametrize("stage", sorted(TARGET_STEPS))
@pytest.mark.parametrize("images", [1, 3, 8, 37, 500, 5000])
def test_the_schedule_reaches_the_target_steps_unless_its_epochs_are_capped(stage: str, images: int) -> None:
    epochs, batch = schedule(stage, images, 16)
    assert batch == min(16, images)
    low, high = EPOCH_RANGE[stage]
    assert low <= epochs <= high
    steps = epochs * math.ceil(images / batch)
    assert steps >= TARGET_STEPS[stage] or epochs == high
    assert (epochs - 1) * math.ceil(images / batch) < TARGET_STEPS[
        stage
    ] or epochs == low  # no more than needed


def test_the_recipe_of_a_small_project_fits_it() -> None:
    records = _records([(120, 90)] * 6) + _records([(120, 90)] * 2, split="val")
    recipe = project_recipe(records, has_val=True)
    assert recipe["classifier"] == {"epochs": 200, "batch_size": 6, "size": 64}  # 1 step an epoch
    assert recipe["maskrcnn"]["batch_size"] == 6 and recipe["maskrcnn"]["image_size"] == 64
    assert recipe["ple"]["batch_size"] == 6 and recipe["evaluate"] == {"split": "val"}
    assert recipe["proposals"]["workers"] == 1  # too few images for a pool of workers
    assert project_recipe(records)["evaluate"] == {"split": "all"}
