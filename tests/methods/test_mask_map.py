"""mask_map against hand-computed COCO average precision."""

import numpy as np
import pytest

from wsseg.methods.mask_map import mask_map, pointing_and_counting
from wsseg.structures import Instances


def _square(y: int, x: int, size: int = 10, shape: tuple[int, int] = (64, 64)) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[y : y + size, x : x + size] = True
    return m


def test_hand_computed_ap_with_a_false_positive_between_two_hits():
    a, b = _square(5, 5), _square(40, 40)
    truth = {1: Instances(np.stack([a, b]), np.array([0, 0]), np.ones(2))}
    # Ranked: hit a (0.9), miss (0.8), hit b (0.7). Precision envelope: 1.0 up to recall 0.5, 2/3 beyond.
    preds = {1: Instances(np.stack([a, _square(20, 40), b]), np.array([0, 0, 0]), np.array([0.9, 0.8, 0.7]))}
    result = mask_map(truth, preds, num_classes=1)
    # COCO's 101 recall points: 51 of them (0.00..0.50) at precision 1, 50 (0.51..1.00) at 2/3.
    expected = (51 * 1.0 + 50 * 2 / 3) / 101
    for key in ("map25", "map50", "map75"):
        assert result.maps[key] == pytest.approx(expected, abs=1e-9)


def test_iou_thresholds_separate_a_loose_mask():
    truth_mask = _square(10, 10, size=20)
    loose = np.zeros_like(truth_mask)
    loose[10:30, 10:18] = True  # 160 of 400 truth pixels, inside it: IoU 0.4
    truth = {7: Instances(truth_mask[None], np.array([0]), np.ones(1))}
    preds = {7: Instances(loose[None], np.array([0]), np.array([0.5]))}
    result = mask_map(truth, preds, num_classes=1)
    assert result.maps["map25"] == pytest.approx(1.0)
    assert result.maps["map50"] == 0.0
    assert result.maps["map75"] == 0.0


def test_classes_are_averaged_and_a_class_without_truth_is_left_out():
    a, b = _square(5, 5), _square(40, 40)
    truth = {1: Instances(np.stack([a, b]), np.array([0, 1]), np.ones(2))}
    # class 0 found; class 1 predicted with the wrong label only; class 2 has no truth at all.
    preds = {1: Instances(np.stack([a, b, b]), np.array([0, 2, 2]), np.array([0.9, 0.8, 0.1]))}
    result = mask_map(truth, preds, num_classes=3)
    assert result.per_class["map50"][0] == pytest.approx(1.0)
    assert result.per_class["map50"][1] == 0.0
    assert np.isnan(result.per_class["map50"][2])
    assert result.maps["map50"] == pytest.approx(0.5)


def test_no_predictions_scores_zero_and_unknown_images_are_refused():
    truth = {1: Instances(_square(5, 5)[None], np.array([0]), np.ones(1))}
    assert mask_map(truth, {}, num_classes=1).maps["map50"] == 0.0
    with pytest.raises(ValueError, match="without ground truth"):
        mask_map(truth, {2: Instances(_square(5, 5)[None], np.array([0]), np.ones(1))}, num_classes=1)


def test_perfect_predictions_score_one_everywhere():
    a, b = _square(5, 5), _square(40, 40, size=14)
    truth = {1: Instances(np.stack([a, b]), np.array([0, 1]), np.ones(2))}
    preds = {1: Instances(np.stack([a, b]), np.array([0, 1]), np.array([0.9, 0.8]))}
    assert mask_map(truth, preds, num_classes=2).maps == pytest.approx({"map25": 1, "map50": 1, "map75": 1})
    assert pointing_and_counting(truth, preds) == {"pointing_accuracy": 1.0, "count_mae": 0.0}


def test_shifted_masks_against_a_hand_computation():
    a, b = _square(5, 5), _square(40, 40)
    truth = {1: Instances(np.stack([a, b]), np.array([0, 0]), np.ones(2))}
    shifted = _square(5, 7)  # 2 px to the right: IoU 80 / 120 = 2/3
    stray = _square(50, 5)  # class 1, which has no true instance
    preds = {
        1: Instances(np.stack([shifted, b, stray]), np.array([0, 0, 1]), np.array([0.9, 0.8, 0.6])),
    }
    result = mask_map(truth, preds, num_classes=2)
    assert result.maps["map25"] == pytest.approx(1.0) and result.maps["map50"] == pytest.approx(1.0)
    # IoU 0.75: a miss ranked first, then a hit: precision 1/2 up to recall 1/2 (51 of COCO's 101
    # recall points), nothing beyond.
    assert result.maps["map75"] == pytest.approx(51 * 0.5 / 101)
    assert np.isnan(result.per_class["map50"][1])
    # The shifted square's most interior pixel is still inside the true one: a hit. Counting pairs:
    # class 0 (2 kept, 2 true) and class 1 (1 kept, 0 true): (0 + 1) / 2.
    assert pointing_and_counting(truth, preds) == {"pointing_accuracy": 1.0, "count_mae": 0.5}


def test_pointing_misses_and_the_score_threshold_of_counting():
    a, b = _square(5, 5), _square(40, 40)
    truth = {
        1: Instances(np.stack([a]), np.array([0]), np.ones(1)),
        2: Instances(np.stack([b]), np.array([1]), np.ones(1)),
    }
    # Image 1: the best class-0 mask is elsewhere (a miss); a weaker one on a is not the point.
    # Image 2: no class-1 prediction at all (a miss); one class-0 false positive below the threshold.
    preds = {
        1: Instances(np.stack([b, a]), np.array([0, 0]), np.array([0.9, 0.7])),
        2: Instances(np.stack([a]), np.array([0]), np.array([0.3])),
    }
    result = pointing_and_counting(truth, preds, score_threshold=0.5)
    assert result["pointing_accuracy"] == 0.0
    # Image 1: class 0 kept 2, true 1 -> 1. Image 2: class 1 kept 0, true 1 -> 1. Mean 1.0.
    assert result["count_mae"] == 1.0
    assert pointing_and_counting(truth, {}) == {"pointing_accuracy": 0.0, "count_mae": 1.0}


def test_a_crowd_region_is_ignored_as_pycocotools_ignores_it(tmp_path) -> None:
    """One object and one crowd region of the same class; a prediction on the crowd scores above the
    prediction on the object. Ignoring the crowd, the object is found at precision 1 (AP 1); counting
    the crowd as an object halves the recall. pycocotools, run directly on
    the same truth and results written as COCO files, agrees."""
    import contextlib
    import io
    import json

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from wsseg.data.coco import encode_mask

    thing, crowd = _square(5, 5), _square(30, 30, size=25)
    truth = {7: Instances(np.stack([thing, crowd]), np.array([0, 0]), np.ones(2), np.array([False, True]))}
    preds = {7: Instances(np.stack([crowd, thing]), np.array([0, 0]), np.array([0.9, 0.6]))}
    ours = mask_map(truth, preds, num_classes=1, iou_thresholds=(0.5,)).maps["map50"]
    assert ours == pytest.approx(1.0)
    # The crowd counted as an object: the object alone, found perfectly, is half the recall (AP ~0.5).
    counted = {7: Instances(truth[7].masks, truth[7].labels, truth[7].scores)}
    alone = {7: Instances(thing[None], np.array([0]), np.array([0.6]))}
    assert mask_map(counted, alone, num_classes=1, iou_thresholds=(0.5,)).maps["map50"] == pytest.approx(
        51 / 101
    )
    assert mask_map(truth, alone, num_classes=1, iou_thresholds=(0.5,)).maps["map50"] == pytest.approx(1.0)

    def annotation(k: int, mask: np.ndarray, iscrowd: int) -> dict:
        ys, xs = np.nonzero(mask)
        box = [float(xs.min()), float(ys.min()), float(np.ptp(xs) + 1), float(np.ptp(ys) + 1)]
        rle = encode_mask(mask)
        return {"id": k, "image_id": 7, "category_id": 1, "segmentation": rle, "area": float(mask.sum()),
                "bbox": box, "iscrowd": iscrowd}  # fmt: skip

    gt_file, dt_file = tmp_path / "truth.json", tmp_path / "results.json"
    gt_file.write_text(json.dumps({
        "images": [{"id": 7, "width": 64, "height": 64, "file_name": "a.png"}],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [annotation(1, thing, 0), annotation(2, crowd, 1)],
    }))  # fmt: skip
    dt_file.write_text(json.dumps([
        {"image_id": 7, "category_id": 1, "segmentation": encode_mask(m), "score": s}
        for m, s in ((crowd, 0.9), (thing, 0.6))
    ]))  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_file))
        ev = COCOeval(gt, gt.loadRes(str(dt_file)), iouType="segm")
        ev.params.iouThrs = np.array([0.5])
        ev.params.areaRng, ev.params.areaRngLbl, ev.params.maxDets = [[0, 1e10]], ["all"], [100]
        ev.evaluate()
        ev.accumulate()
    assert float(ev.eval["precision"][0, :, 0, 0, 0].mean()) == pytest.approx(ours)
