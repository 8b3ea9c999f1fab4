"""Speed measurements of the benchmark: each returns a positive ratio or time for the real work."""

from __future__ import annotations

import pytest
import torch

from tests.methods.test_prm import random_model
from tests.methods.test_proposals import _flat_shapes_image
from wsseg.bench.speed import measure_overlay_ms, measure_prm_speed, measure_proposal_speed
from wsseg.methods.prm import PRMConfig
from wsseg.methods.proposals import ProposalConfig


def test_measure_prm_speed_reports_ratios() -> None:
    speed = measure_prm_speed(random_model(), torch.randn(3, 32, 32), n_repeat=1, cfg=PRMConfig(max_peaks=4))
    assert set(speed) == {"num_peaks", "batched", "naive"} and speed["batched"] > 0 and speed["naive"] > 0


def test_measure_speed_reports_a_ratio():
    image, _ = _flat_shapes_image()
    result = measure_proposal_speed(image, ProposalConfig(scales=(100.0,), colour_spaces=("rgb",)), repeats=1)
    assert result["selective_search_s"] > 0 and result["felzenszwalb_s"] > 0
    assert result["ratio"] == pytest.approx(result["selective_search_s"] / result["felzenszwalb_s"])
    assert result["proposals"] > 0


def test_measure_overlay_ms_times_the_real_work() -> None:
    ms = measure_overlay_ms(size=64, repeat=2)
    assert 0 < ms < 5000
