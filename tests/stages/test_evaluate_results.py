"""``wsseg evaluate --predictions FILE``: a COCO results file in the source's ids, scored against the
imported truth, gives pycocotools' own figures on the original files; bad results are named."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tests.store.test_import_layouts import _coco_tree, _disc
from wsseg.cli import main
from wsseg.data.coco import encode_mask
from wsseg.store.importer import import_source
from wsseg.store.project import Project


def _pycocotools(truth: Path, results: Path) -> dict[str, float]:
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(truth))
        ev = COCOeval(gt, gt.loadRes(str(results)), iouType="segm")
        ev.params.iouThrs = np.array([0.25, 0.5, 0.75])
        ev.params.areaRng, ev.params.areaRngLbl, ev.params.maxDets = [[0, 1e10]], ["all"], [100]
        ev.evaluate()
        ev.accumulate()
    out = {}
    for t, key in enumerate(("map25", "map50", "map75")):
        p = ev.eval["precision"][t, :, :, 0, 0]
        out[key] = float(np.mean([p[:, k].mean() for k in range(p.shape[1]) if (p[:, k] > -1).all()]))
    return out


def test_a_results_file_scores_as_pycocotools_scores_it(tmp_path: Path, capsys) -> None:
    json_path = _coco_tree(tmp_path / "coco", tmp_path / "coco" / "val2017")
    project = Project.create(tmp_path / "p")
    import_source(project, json_path)

    def result(image_id: int, category: int, mask: np.ndarray, score: float) -> dict:
        return {
            "image_id": image_id,
            "category_id": category,
            "segmentation": encode_mask(mask),
            "score": score,
        }

    results = [
        result(139, 18, _disc(16, 16), 0.9),  # the dog, exactly
        result(139, 1, _disc(30, 44, 7), 0.8),  # the person, a little off
        result(285, 18, _disc(32, 48, 10), 0.95),  # on the crowd of dogs: ignored
        result(285, 18, _disc(17, 17), 0.5),  # the dog, nearly
        result(632, 18, _disc(40, 10), 0.7),  # a miss
        result(632, 18, _disc(16, 16, 5), 0.6),  # the dog, loosely
    ]
    path = tmp_path / "results.json"
    path.write_text(
        json.dumps(results + [{"image_id": 999, "category_id": 18, "segmentation": [], "score": 1}])
    )
    out = tmp_path / "metrics.json"
    argv = ["evaluate", "--project", str(project.root), "--predictions", str(path), "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert "refused results.json: result #6" in printed.err and "unknown image_id 999" in printed.err
    metrics = json.loads(out.read_text())
    assert metrics["results"] == 6 and metrics["refused"] == 1 and metrics["images"] == 3
    path.write_text(json.dumps(results))  # pycocotools itself refuses unknown images
    expected = _pycocotools(json_path, path)
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, abs=1e-9), key
    assert 0 < metrics["map75"] < metrics["map25"] <= 1  # the figures differ: the check has teeth
