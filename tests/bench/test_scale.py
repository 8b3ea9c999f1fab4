"""``wsseg bench --scale`` on a few images: every way's proposals equal the one-process run's, and the
report's figures agree with each other and with report.md."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from wsseg.bench import scale


def test_the_scale_bench_measures_three_ways_and_checks_every_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(scale.IMAGES, True, 6)
    report = scale.run_scale(tmp_path / "out", quick=True, devices=False)
    assert json.loads((tmp_path / "out" / "report.json").read_text()) == report
    figures = report["scale"]
    rates = figures["proposals"]["images_per_s"]
    assert set(rates) == {"one", "two", "cluster"} and all(r > 0 for r in rates.values())
    assert figures["images"] == 6
    assert figures["cluster_matches_single"] is True and figures["two_matches_single"] is True
    assert figures["proposals"]["speedup_two"] == pytest.approx(rates["two"] / rates["one"])
    assert figures["proposals"]["engine_overhead"] == pytest.approx(1 - rates["cluster"] / rates["two"])
    text = (tmp_path / "out" / "report.md").read_text()
    assert f"| 2-node Ray cluster | {rates['cluster']:.2f} |" in text
    assert not any(p.name.startswith("tmp") for p in (tmp_path / "out").iterdir())  # work folder removed


def test_the_gpu_path_section_times_each_unit_on_every_device_torch_sees() -> None:
    import torch

    from wsseg.bench.devices import PRM_PEAKS, measure_devices
    from wsseg.training.device import DEVICE_ENV

    before = os.environ.get(DEVICE_ENV)
    report = measure_devices(repeats=1)
    assert os.environ.get(DEVICE_ENV) == before  # the choice is the bench's own, only while it measures
    assert report["gpu"] == torch.cuda.is_available()
    expected = {"cpu", *(f"cuda:{k}" for k in range(torch.cuda.device_count()))}
    assert set(report["times"]) == expected
    for times in report["times"].values():
        assert times["classifier_epoch_s"] > 0 and times["prms_s"] > 0 and times["maskrcnn_step_s"] > 0
        # an untrained classifier has a peak almost everywhere: the unit computes the cap's worth at once
        assert times["prm_peaks"] == PRM_PEAKS
    assert ("ratios" in report) == report["gpu"]
    text = scale.render_scale({"scale": _FIGURES, "devices": report})
    expected = "CPU / GPU" if report["gpu"] else "No GPU visible to torch here: CPU times only."
    assert expected in text
    assert f"| cpu | {report['times']['cpu']['classifier_epoch_s']:.3f} |" in text


_FIGURES = {
    "images": 2,
    "image_size": [160, 160],
    "engine": "ray",
    "cluster": "2 nodes",
    "proposals": {"images_per_s": {"one": 1.0, "two": 2.0, "cluster": 1.5}, "engine_overhead": 0.25},
    "cluster_start_s": 3.0,
    "two_matches_single": True,
    "cluster_matches_single": True,
}
