"""``wsseg bench --scale`` on a few images: every way's proposals equal the one-process run's, and the
report's figures agree with each other and with report.md."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wsseg.bench import scale


def test_the_scale_bench_measures_three_ways_and_checks_every_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(scale.IMAGES, True, 6)
    report = scale.run_scale(tmp_path / "out", quick=True)
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
