import json
from pathlib import Path

import pytest

from wsseg.bench import BenchPlan, run_bench
from wsseg.engine import TrainConfig
from wsseg.errors import DataNotFoundError
from wsseg.models.classifier import ClassifierConfig


def test_tiny_shapes_bench_writes_real_figures(tmp_path: Path) -> None:
    plan = BenchPlan(
        train_images=16,
        val_images=8,
        classifier=ClassifierConfig(num_classes=4, backbone="small", small_width=8),
        train=TrainConfig(epochs=1, batch_size=8, lr=1e-3),
    )
    report = run_bench("shapes", quick=True, out=tmp_path, plan=plan)
    stored = json.loads((tmp_path / "report.json").read_text())
    assert stored["sizes"]["train_images"] == 16 and stored["sizes"]["val_images"] == 8
    cls = stored["classifier"]
    assert 0.0 <= cls["cls_map"] <= 1.0
    assert 0.0 <= cls["instance_recall"] <= 1.0 and cls["count_mae"] >= 0.0
    assert set(cls) >= {"peak_precision", "prm_point_precision", "prm_point_recall", "peaks_per_image"}
    assert stored["speed"]["crm_peaks_over_forward"] > 0
    assert stored["speed"]["app_overlay_ms"] > 0
    # Stages not built yet are absent, never faked.
    for later in ("maskrcnn", "ple", "curation"):
        assert later not in stored
    assert 0.0 <= stored["proposals"]["abo"] <= 1.0 and stored["proposals"]["over_felzenszwalb"] > 0
    for row in ("prm", "wise", "oracle"):
        assert set(stored["pseudo_masks"][row]) >= {"map25", "map50", "map75"}
    assert "annotations" in json.loads(Path(stored["pseudo_masks"]["coco"]).read_text())
    assert "`classifier.cls_map`" in (tmp_path / "report.md").read_text()
    assert report["seconds"]["total"] >= report["seconds"]["classifier_train"]


def test_real_dataset_missing_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="nuclei"):
        run_bench("nuclei", quick=True, out=tmp_path, data_root=tmp_path / "nowhere")
