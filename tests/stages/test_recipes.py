"""One home for every measured default: the command line, the CAMs page, the demo and the benchmark all
resolve to the recipe's inference peaks, each read back from what it actually builds or stores, and
None means "off" everywhere."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from wsseg.bench.speed import measure_overlay_ms
from wsseg.bench.sweep import INFERENCE
from wsseg.cli import build_parser, main
from wsseg.demo.project import create_demo_project, install_demo_checkpoint, train_demo_classifier
from wsseg.methods.prm import PRMConfig
from wsseg.models.peaks import PeakConfig, find_peaks
from wsseg.stages.evaluate_classifier import evaluate_classifier
from wsseg.stages.make_peaks import inference_from_args, make_peaks
from wsseg.stages.recipes import (
    INFERENCE_PEAKS,
    RETRIEVAL_VARIANTS,
    ROUNDS,
    BenchPlan,
    InferencePeaks,
    plan_for,
    ple_plan,
    retrieval_variant,
)
from wsseg.stages.train_classifier import config_to_dict
from wsseg.store.project import Project
from wsseg.training.engine import CHECKPOINT
from wsseg.views.cam import ImageMaps, PeakSettings, class_peaks


def _peaks_args(*options: str) -> argparse.Namespace:
    return build_parser().parse_args(["peaks", "--project", "p", *options])


def test_the_command_line_leaves_every_peak_default_to_the_recipe() -> None:
    args = _peaks_args()
    fields = [f.name for f in dataclasses.fields(InferencePeaks)]
    assert not [name for name in fields if hasattr(args, name)]  # no second copy of a default
    assert inference_from_args(args) == INFERENCE_PEAKS


def test_off_on_the_command_line_is_none_and_numbers_replace_the_recipe() -> None:
    args = _peaks_args(
        "--relative-threshold", "off", "--smooth", "OFF", "--class-threshold", "0", "--prm", "gradient"
    )
    assert inference_from_args(args) == dataclasses.replace(
        INFERENCE_PEAKS, relative_threshold=None, smooth=None, class_threshold=0.0, method="gradient"
    )
    assert inference_from_args(_peaks_args("--scale", "2")).scale == 2.0
    with pytest.raises(SystemExit):
        _peaks_args("--peak-threshold", "high")


def test_the_recipe_as_a_prm_config_changes_only_the_inference_filters() -> None:
    cfg = INFERENCE_PEAKS.prm_config()
    recipe = {f.name: getattr(INFERENCE_PEAKS, f.name) for f in dataclasses.fields(InferencePeaks)}
    for field in dataclasses.fields(PRMConfig):
        expected = recipe.get(field.name, field.default)
        assert getattr(cfg, field.name) == expected, field.name


def _synthetic_maps() -> ImageMaps:
    """Blobs of both signs on a 3-class, 20x20-cell map (stride 8): weak and negative peaks to filter."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:20, 0:20].astype(np.float32)
    crm = np.stack(
        [
            sum(
                a * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 6.0)
                for a, y, x in rng.uniform(-1, 3, (6, 3)) * [1, 7, 7]
            )
            + 0.1 * rng.standard_normal((20, 20))
            for _ in range(3)
        ]
    ).astype(np.float32)
    return ImageMaps(
        image=np.zeros((160, 160, 3), np.uint8),
        crm=crm,
        class_scores=crm.mean(axis=(1, 2)),
        stride=8,
        upsample=PeakConfig().upsample,
        source="synthetic",
        stored_peaks=np.zeros((0, 4), np.float32),
        stored_prms=np.zeros((0, 160, 160), np.float32),
    )


def test_the_cams_page_defaults_are_the_recipes_peaks() -> None:
    maps = _synthetic_maps()
    expected = find_peaks(
        maps.crm,
        PeakConfig(upsample=maps.upsample),
        peak_threshold=INFERENCE_PEAKS.peak_threshold,
        relative_threshold=INFERENCE_PEAKS.relative_threshold,
        smooth=INFERENCE_PEAKS.smooth,
        stride=maps.stride,
        image_size=(160, 160),
    )
    found = [p for c in range(3) for p in class_peaks(maps, PeakSettings(), c)]
    assert sorted(found, key=lambda p: (p.class_index, -p.value)) == sorted(
        expected, key=lambda p: (p.class_index, -p.value)
    )
    # None is "off": nothing filtered but the local-maximum test and the peak layer's own filter
    off = PeakSettings(relative_threshold=None, peak_threshold=None, smooth=None)
    every = find_peaks(maps.crm, PeakConfig(upsample=maps.upsample), stride=8, image_size=(160, 160))
    assert [p for c in range(3) for p in class_peaks(maps, off, c)] == sorted(
        every, key=lambda p: p.class_index
    )
    assert len(every) > len(expected)


def test_wsseg_peaks_stores_the_recipes_config(trained: Path, tmp_path: Path) -> None:
    root = tmp_path / "project"
    shutil.copytree(trained, root)  # the shared project keeps its own runs
    assert main(["peaks", "--project", str(root), "--shard", "0/6"]) == 0
    run = Project(root).latest_run("peaks")
    assert run.config["prm"] == dataclasses.asdict(INFERENCE_PEAKS.prm_config())
    assert run.config["scale"] == INFERENCE_PEAKS.scale


def test_the_demo_finds_the_recipes_peaks(trained: Path, tmp_path: Path) -> None:
    project = create_demo_project(tmp_path / "demo", n_images=3, seed=5)
    checkpoint = trained / "checkpoints" / "classifier" / CHECKPOINT  # stands in for the shipped one
    assert install_demo_checkpoint(project, checkpoint) is not None
    peaks = project.latest_run("peaks").config
    assert peaks["prm"] == dataclasses.asdict(INFERENCE_PEAKS.prm_config())
    assert peaks["scale"] == INFERENCE_PEAKS.scale


def test_the_demo_trains_the_benchmarks_classifier(tmp_path: Path) -> None:
    project = create_demo_project(tmp_path / "demo", n_images=32, seed=5)  # one batch of the recipe
    train_demo_classifier(project, epochs=1)
    classifier = project.latest_run("classifier").config
    recipe = plan_for("shapes", False, len(project.classes()), seed=0)
    stored = json.loads(json.dumps({"model": config_to_dict(recipe.classifier)}))["model"]  # tuples as lists
    assert classifier["model"] == stored
    assert classifier["train"] == dataclasses.asdict(dataclasses.replace(recipe.train, epochs=1))
    assert project.latest_run("peaks").config["prm"] == dataclasses.asdict(INFERENCE_PEAKS.prm_config())


def test_the_benchmark_reads_the_recipe() -> None:
    assert inspect.signature(evaluate_classifier).parameters["inference"].default is INFERENCE_PEAKS
    assert inspect.signature(make_peaks).parameters["scale"].default == INFERENCE_PEAKS.scale
    assert INFERENCE["default"] is INFERENCE_PEAKS  # the sweep's baseline row
    shapes, nuclei = plan_for("shapes", True, 4, 0), plan_for("nuclei", True, 1, 0)
    assert shapes.peak_scale == BenchPlan.peak_scale == INFERENCE_PEAKS.scale
    assert nuclei.peak_scale > INFERENCE_PEAKS.scale  # touching nuclei need enlarged tiles
    assert shapes.pseudo_variant in RETRIEVAL_VARIANTS and nuclei.pseudo_variant in RETRIEVAL_VARIANTS
    assert retrieval_variant("wise").strategy == "wise"
    assert measure_overlay_ms(size=64, repeat=1) > 0  # times the page's default peak search


def test_the_ple_recipe_runs_self_training_rounds_on_shapes_only() -> None:
    assert ple_plan("shapes", False, 0).rounds == ROUNDS > 1
    assert ple_plan("shapes", True, 0).rounds == 1  # measured: the rounds overran the quick budget
    assert ple_plan("camvid", False, 0).rounds == 1  # measured: rounds lowered CamVid's mIoU
