"""What the Evaluate page computes: per-image scores, the difference overlay and the worst-image order
against hand-computed values, and the runs of a real project scored against its ground truth."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from wsseg.fileio import write_png
from wsseg.methods.mask_map import mask_map
from wsseg.stages.evaluate import store_predictions
from wsseg.stages.evaluate_ple import LABEL_MAPS, PREDICT_STAGE
from wsseg.store.instances import semantic_truth, stored_instances, true_instances
from wsseg.store.project import Project
from wsseg.structures import Instances, label_map
from wsseg.views.evaluate import (
    FN,
    FP,
    TP,
    compare_images,
    difference_codes,
    difference_overlay,
    eval_runs,
    image_score,
    peak_scores,
    ple_scores,
    run_stamp,
    run_truth,
    score_instances,
    score_run,
    worst_images,
)


def _square(y: int, x: int, size: int = 10, shape: tuple[int, int] = (64, 64)) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[y : y + size, x : x + size] = True
    return m


def _inst(masks: list[np.ndarray], labels: list[int], scores: list[float] | None = None) -> Instances:
    scores = [1.0] * len(masks) if scores is None else scores
    return Instances(np.stack(masks), np.array(labels, np.int64), np.array(scores, np.float64))


A, B = _square(5, 5), _square(40, 40)
SHIFTED = _square(5, 10)  # A moved 5 columns: 50 shared pixels of 150 in the union, IoU 1/3


def test_image_score_is_the_mean_best_same_class_iou_of_the_true_instances() -> None:
    truth = _inst([A, B], [0, 1])
    assert image_score(truth, _inst([SHIFTED, B], [0, 1])) == pytest.approx((1 / 3 + 1) / 2)
    # B found with the wrong class counts 0; the better of two masks of a class counts.
    assert image_score(truth, _inst([SHIFTED, B], [0, 0])) == pytest.approx((1 / 3 + 0) / 2)
    assert image_score(truth, _inst([SHIFTED, A, B], [0, 0, 1])) == pytest.approx(1.0)
    assert image_score(truth, Instances.empty(64, 64)) == 0.0
    # No true instance: right when nothing is predicted, wrong otherwise.
    assert image_score(Instances.empty(64, 64), Instances.empty(64, 64)) == 1.0
    assert image_score(Instances.empty(64, 64), _inst([A], [0])) == 0.0


def test_worst_images_lowest_score_first_ties_by_id() -> None:
    scores = {3: 0.5, 1: 0.2, 2: 0.5, 7: 0.0, 5: 0.9}
    assert worst_images(scores) == [7, 1, 2, 3, 5]
    assert worst_images(scores, 2) == [7, 1]


def test_difference_codes_count_right_false_and_missed_pixels() -> None:
    truth = _inst([A, B], [0, 1])
    predicted = _inst([SHIFTED, B], [0, 0])  # B predicted as class 0: a wrong class
    codes = difference_codes(truth, predicted)
    assert codes.dtype == np.uint8 and codes.shape == (64, 64)
    assert np.sum(codes == TP) == 50  # A's columns 10..14
    assert np.sum(codes == FN) == 50  # A's columns 5..9
    assert np.sum(codes == FP) == 50 + 100  # SHIFTED outside A, and all of B
    assert np.sum(codes == 0) == 64 * 64 - 250
    assert codes[5, 5] == FN and codes[5, 12] == TP and codes[5, 17] == FP and codes[45, 45] == FP


def test_difference_overlay_colours_by_hand() -> None:
    image = np.full((2, 2, 3), 120, np.uint8)  # luma 120, dimmed to grey 60
    codes = np.array([[0, TP], [FP, FN]], np.uint8)
    out = difference_overlay(image, codes, opacity=0.8)  # 0.2 x 60 + 0.8 x colour
    assert out.dtype == np.uint8
    assert out[0, 0].tolist() == [60, 60, 60]
    assert out[0, 1].tolist() == [44, 172, 76]  # green (40, 200, 80)
    assert out[1, 0].tolist() == [200, 52, 52]  # red (235, 50, 50)
    assert out[1, 1].tolist() == [44, 108, 216]  # blue (40, 120, 255)
    # A coloured pixel outside the codes turns grey: half of 0.299 x 200 + 0.587 x 100 + 0.114 x 0.
    assert difference_overlay(np.array([[[200, 100, 0]]], np.uint8), np.zeros((1, 1), np.uint8))[
        0, 0
    ].tolist() == [59, 59, 59]


def test_label_map_puts_the_higher_score_on_top() -> None:
    inst = _inst([A, SHIFTED], [2, 0], [0.9, 0.3])
    labels = label_map(inst, (64, 64))
    assert labels[5, 12] == 3 and labels[5, 17] == 1 and labels[30, 30] == 0


def test_score_instances_against_hand_computed_ap_and_image_scores() -> None:
    truth = {1: _inst([A], [0]), 2: _inst([B], [0])}
    predicted = {1: _inst([A], [0]), 2: Instances.empty(64, 64)}
    scores = score_instances(truth, predicted, num_classes=1)
    # One of two true instances found at precision 1: 51 of COCO's 101 recall points.
    assert scores.maps["map50"] == pytest.approx(51 / 101)
    assert scores.per_class["map75"][0] == pytest.approx(51 / 101)
    assert scores.per_image == {1: 1.0, 2: 0.0}
    assert scores.pointing_accuracy == 0.5 and scores.count_mae == 0.5
    # Below the score threshold a mask still counts for mAP, not for the image score.
    low = {1: _inst([A], [0], [0.2]), 2: Instances.empty(64, 64)}
    scores = score_instances(truth, low, num_classes=1, score_threshold=0.5)
    assert scores.maps["map50"] == pytest.approx(51 / 101) and scores.per_image == {1: 0.0, 2: 0.0}


def test_a_pseudo_mask_run_is_scored_on_the_images_it_covered(masked: Path) -> None:
    project = Project(masked)
    runs = eval_runs(project)
    assert len(runs.pseudo) == 1 and not runs.models and not runs.ple and len(runs.peaks) == 1
    run = runs.pseudo[0]
    records = project.images()
    truth = true_instances(project, records)  # the bench's independent reading of both
    assert set(run_truth(project, run)) == {r.id for r in records}
    expected = mask_map(truth, stored_instances(project, run.id, truth), len(project.classes()))
    scores = score_run(project, run)
    assert scores.maps == pytest.approx(expected.maps)
    stored = stored_instances(project, run.id, truth)
    for image_id, value in scores.per_image.items():
        assert value == pytest.approx(image_score(truth[image_id], stored[image_id]))
    # Rejecting a mask changes the run's stamp (the page's cache key) and what is scored.
    stamp = run_stamp(project, run)
    mask = project.pseudo_masks(run_id=run.id)[0]
    project.edit_mask(mask["id"], mask["version"], "reject", status="rejected", author="test")
    assert run_stamp(project, run) != stamp
    comparison = compare_images(project, [mask["image_id"]], run.id, None)[0]
    assert len(comparison.pseudo) == len(stored[mask["image_id"]]) - 1 and comparison.predicted is None
    assert comparison.image.shape == (*comparison.truth.masks.shape[1:], 3)


def test_peak_pointing_accuracy_by_direct_lookup(proposed: Path) -> None:
    project = Project(proposed)
    run = eval_runs(project).peaks[0]
    classes = project.classes()
    truth = true_instances(project, project.images())
    inside = total = 0
    per_class = np.zeros((len(classes), 2))
    for record in project.images():
        for peak in project.peaks(record.id, run.id):
            c = classes.index(peak.class_name)
            if peak.class_name not in record.tags:
                continue
            inst = truth[record.id]
            hit = bool(inst.masks[inst.labels == c][:, round(peak.y), round(peak.x)].any())
            inside, total = inside + hit, total + 1
            per_class[c] += (hit, 1)
    found = peak_scores(project, run)
    assert total > 0 and found["images"] == 6
    assert found["pointing_accuracy"] == pytest.approx(inside / total)
    for c in range(len(classes)):
        if per_class[c, 1]:
            assert found["per_class"][c] == pytest.approx(per_class[c, 0] / per_class[c, 1])
        else:
            assert np.isnan(found["per_class"][c])


def test_model_predictions_and_label_maps_are_read_from_their_runs(masked: Path, tmp_path: Path) -> None:
    root = tmp_path / "project"
    shutil.copytree(masked, root)
    project = Project(root)
    classes = project.classes()
    records = project.images()
    truth = true_instances(project, records)

    # A model run through the evaluate stage's own writer: the truth, less the first image's first instance.
    first = records[0].id
    predictions = {k: Instances(v.masks, v.labels, np.full(len(v), 0.9)) for k, v in truth.items()}
    n = len(truth[first])
    predictions[first] = Instances(truth[first].masks[1:], truth[first].labels[1:], np.full(n - 1, 0.9))
    run_id = project.start_run("evaluate", {"stage": "maskrcnn", "model": "maskrcnn", "split": None})
    store_predictions(project, run_id, predictions, classes, tmp_path / "predictions.json")
    project.finish_run(run_id, "done", {})
    model = eval_runs(project).models[0]
    scores = score_run(project, model)
    assert scores.per_image[first] == pytest.approx((n - 1) / n)
    assert all(v == 1.0 for k, v in scores.per_image.items() if k != first)
    assert worst_images(scores.per_image, 1) == [first]

    # A pixel-label estimator run: perfect maps, except the first image's, all background.
    labels = ["background", *classes]
    ple_id = project.start_run(PREDICT_STAGE, {"labels": labels, "split": None})
    folder = project.artifacts(LABEL_MAPS, ple_id)
    truths = semantic_truth(project, records, background=True)
    for record, labels_map in zip(records, truths, strict=True):
        write_png(
            folder / f"{record.id}.png", labels_map if record.id != first else np.zeros_like(labels_map)
        )
    project.finish_run(ple_id, "done", {"images": len(records)})
    found = ple_scores(project, eval_runs(project).ple[0])
    assert found["images"] == len(records)
    stacked = np.stack(truths)
    lost = truths[0]
    for k, name in enumerate(labels):
        pixels = int((stacked == k).sum())
        if k == 0:  # background: its truth, plus the first image's wiped foreground, in the union
            expected = pixels / (pixels + int((lost > 0).sum()))
        else:
            expected = (pixels - int((lost == k).sum())) / pixels if pixels else float("nan")
        assert found["iou"][name] == pytest.approx(expected, nan_ok=True)
