"""The simulated annotator of the curation benchmark, on the hand-made project of tests/curation_project.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.curation_project import PROPOSALS, tiny_project
from wsseg.bench.curation import bench_curation
from wsseg.data.coco import read_coco
from wsseg.methods.mask_map import mask_map
from wsseg.structures import Instances


def test_simulated_annotator_fixes_the_queue_head_and_leaves_the_project_alone(tmp_path: Path) -> None:
    project = tiny_project(tmp_path / "p")
    # truth: class a is proposal 1, class b is proposal 2. Masks: 1 (a, proposal 0, IoU 0.64: right),
    # 2 (a, proposal 2: wrong, its rank-1 proposal is proposal 1), 3 (b, proposal 1: wrong, no better one).
    truth = {1: Instances(PROPOSALS[[1, 2]], np.array([0, 1]), np.ones(2))}
    result = bench_curation(project, tmp_path / "bench", n=2, truth=truth, seed=0)
    # queue (default weights, no other strategy): mask 2 (confidence term 1), 3 (0.5), 1 (0)
    assert {k: result["queue"][k] for k in ("accepted", "swapped", "rejected", "wrong")} == {
        "accepted": 0,
        "swapped": 1,
        "rejected": 1,
        "wrong": 2,
    }
    before = Instances(PROPOSALS[[0, 2, 1]], np.array([0, 0, 1]), np.array([1.0, 1.0, 0.7]))
    after = Instances(PROPOSALS[[0, 1]], np.array([0, 0]), np.array([1.0, 1.0]))
    assert result["map50_before"] == pytest.approx(mask_map(truth, {1: before}, 2, (0.5,)).maps["map50"])
    assert result["queue"]["map50_after"] == pytest.approx(
        mask_map(truth, {1: after}, 2, (0.5,)).maps["map50"]
    )
    random = result["random"]
    assert random["accepted"] + random["swapped"] + random["rejected"] == 2
    coco = read_coco(result["queue"]["coco"])
    assert sorted(int(i.mask.sum()) for i in coco.instances[1]) == [
        64,
        100,
    ]  # mask 1 proposed, mask 2 swapped
    assert [m["status"] for m in project.pseudo_masks()] == ["proposed"] * 3  # the original is untouched
    assert project.edit_history() == []
