"""The lesson's logic: every step's expected answer is read off what happened, and judged."""

import numpy as np
import pytest

from wsseg.errors import BadInputError
from wsseg.structures import Instances
from wsseg.views.lesson import (
    STEP_KEYS,
    STEPS,
    Outcome,
    cam_outcome,
    detection_outcome,
    judge,
    methods_outcome,
    peaks_outcome,
    peaks_per_instance,
    prm_outcome,
    proposals_outcome,
    pseudo_mask_outcome,
    semantic_outcome,
    step,
)

H = W = 64
NAMES = ["disc", "square", "triangle", "star"]


def box(y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[y0:y1, x0:x1] = True
    return mask


# Two discs (class 0) left and centre, one square (class 1) right; classes 2 and 3 absent.
TRUTH = Instances(
    np.stack([box(10, 4, 22, 16), box(40, 24, 52, 36), box(10, 44, 24, 58)]), np.array([0, 0, 1]), np.ones(3)
)


def test_steps_cover_the_pipeline_in_order_and_their_texts_format() -> None:
    assert STEP_KEYS == ("tags", "cam", "methods", "peaks", "prm", "proposals", "pseudo", "maskrcnn", "ple")
    for s in STEPS:
        keys = [k for k, _ in s.choices]
        assert len(keys) == len(set(keys)) >= 3
        assert s.explanation and s.title
        values = {"name": "disc", "count": 2, "first": "Grad-CAM", "second": "Eigen-CAM"}
        s.question.format(**values)
        for k in keys:
            assert "{" not in s.choice_text(k, **values)
    with pytest.raises(BadInputError, match="expected one of"):
        step("segmentation")


def test_judge_says_right_or_names_the_true_choice() -> None:
    cam = step("cam")
    outcome = Outcome("on_class", "It peaks on a disc.")
    assert judge(cam, outcome, "on_class", name="disc").correct
    wrong = judge(cam, outcome, "nowhere", name="disc")
    assert not wrong.correct and "“On a disc”" in wrong.message and "It peaks on a disc." in wrong.message
    assert not judge(cam, outcome, None, name="disc").correct
    with pytest.raises(BadInputError, match="answer='maybe'"):
        judge(cam, outcome, "maybe", name="disc")


def _crms(*peaks: tuple[int, int, float]) -> np.ndarray:
    """One map per class: a Gaussian bump of the given height at (y, x), on a -1 floor."""
    yy, xx = np.mgrid[0:H, 0:W]
    return np.stack(
        [-1 + (v + 1) * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 20.0) for y, x, v in peaks]
    ).astype(np.float32)


def test_cam_outcome_tells_where_the_map_peaks() -> None:
    # disc's map on the first disc, square's map on a disc, triangle's below zero, star's on background.
    crms = _crms((16, 10, 5.0), (46, 30, 4.0), (16, 10, -0.5), (60, 60, 3.0))
    assert cam_outcome(crms, 0, TRUTH, NAMES).expected == "on_class"
    other = cam_outcome(crms, 1, TRUTH, NAMES)
    assert other.expected == "on_other" and "disc" in other.why
    assert cam_outcome(crms, 2, TRUTH, NAMES).expected == "nowhere"
    assert cam_outcome(crms, 3, TRUTH, NAMES).expected == "background"
    weak = _crms((16, 10, 5.0), (16, 50, 1.0), (0, 0, -1), (0, 0, -1))  # square's 1.0 < 0.3 x 5.0
    assert cam_outcome(weak, 1, TRUTH, NAMES).expected == "nowhere"


def test_peaks_outcome_compares_the_count_with_the_true_instances() -> None:
    assert peaks_outcome([(16, 10)], TRUTH, 0, "disc").expected == "fewer"
    same = peaks_outcome([(16, 10), (46, 30)], TRUTH, 0, "disc")
    assert same.expected == "same" and "peaks on each disc: 1, 1." in same.why
    assert peaks_outcome([(16, 10), (46, 30), (60, 2)], TRUTH, 0, "disc").expected == "more"


def test_two_peaks_on_one_disc_are_not_one_peak_per_disc() -> None:
    # The learner's case: as many peaks as discs, both on the first disc (a peak on its outline too).
    both = peaks_outcome([(16, 10), (21, 15)], TRUTH, 0, "disc")
    assert both.expected == "misplaced"
    assert (
        "peaks on each disc: 2, 0." in both.why and "a disc holds 2 peaks and 1 disc(s) hold none" in both.why
    )
    assert judge(step("peaks"), both, "same", name="disc", count=2).correct is False
    assert judge(step("peaks"), both, "misplaced", name="disc", count=2).correct
    # One on a disc, one on the square (another class): as many as discs, not one on each.
    off = peaks_outcome([(16, 10), (16, 50)], TRUTH, 0, "disc")
    assert off.expected == "misplaced" and "1 peak(s) sit off every disc" in off.why


def test_peaks_per_instance_counts_each_peak_once() -> None:
    # (22, 16) is just outside the first disc's box (rows 10-21, columns 4-15): within the 2-pixel margin.
    assert peaks_per_instance([(16, 10), (22, 16), (46, 30), (0, 63)], TRUTH, 0) == ([2, 1], 1)
    assert peaks_per_instance([], TRUTH, 0) == ([0, 0], 0)
    assert peaks_per_instance([(16, 50)], TRUTH, 1) == ([1], 0)  # the square's own instance


def test_prm_outcome_measures_the_mass_on_each_instance() -> None:
    own = TRUTH.masks[0] * 1.0
    assert prm_outcome(own / own.sum(), (16, 10), TRUTH, 0, "disc").expected == "one"
    other = TRUTH.masks[1] * 1.0
    result = prm_outcome(other / other.sum(), (16, 10), TRUTH, 0, "disc")
    assert result.expected == "all" and "100% on the other discs" in result.why
    flat = np.ones((H, W)) / (H * W)
    assert prm_outcome(flat, (16, 10), TRUTH, 0, "disc").expected == "whole"
    assert prm_outcome(np.zeros((H, W)), (16, 10), TRUTH, 0, "disc").expected == "whole"


def test_proposals_outcome_uses_the_best_overlap_of_each_shape() -> None:
    assert proposals_outcome(TRUTH.masks.copy(), TRUTH).expected == "all"
    assert proposals_outcome(TRUTH.masks[:1].copy(), TRUTH).expected == "some"
    assert proposals_outcome(box(0, 0, 2, 2)[None], TRUTH).expected == "none"


def test_pseudo_mask_outcome_compares_with_the_instance_under_the_peak() -> None:
    disc = TRUTH.masks[0]
    assert pseudo_mask_outcome(disc, (16, 10), TRUTH, 0, "disc").expected == "fits"
    big = pseudo_mask_outcome(box(0, 0, 40, 40), (16, 10), TRUTH, 0, "disc")
    assert big.expected == "too_big" and "IoU 0.09" in big.why  # 144 / 1600
    assert pseudo_mask_outcome(box(10, 4, 13, 16), (16, 10), TRUTH, 0, "disc").expected == "too_small"
    assert pseudo_mask_outcome(None, (16, 10), TRUTH, 0, "disc").expected == "none"
    # A peak off every disc is judged against the disc the mask overlaps most: the second one.
    assert pseudo_mask_outcome(TRUTH.masks[1], (60, 2), TRUTH, 0, "disc").expected == "fits"


def test_detection_outcome_counts_the_shapes_found_with_the_right_class() -> None:
    scores = np.array([0.9, 0.8, 0.3])
    predicted = Instances(TRUTH.masks.copy(), TRUTH.labels.copy(), scores)
    assert detection_outcome(predicted, TRUTH, 0.2).expected == "all"
    assert detection_outcome(predicted, TRUTH, 0.5).expected == "most"  # 2 of 3
    assert detection_outcome(predicted, TRUTH, 0.95).expected == "few"
    wrong_class = Instances(TRUTH.masks.copy(), np.array([0, 1, 0]), scores)
    result = detection_outcome(wrong_class, TRUTH, 0.2)
    assert (
        result.expected == "few"
        and "finds 1 of the 3" in result.why
        and "2 of its masks match no" in result.why
    )
    # One mask cannot be counted for two shapes.
    twice = Instances(np.stack([TRUTH.masks[0]]), np.array([0]), np.array([0.9]))
    assert "finds 1 of the 3" in detection_outcome(twice, TRUTH, 0.5).why


def test_semantic_outcome_thresholds_the_iou() -> None:
    truth = np.zeros((H, W), np.uint8)
    truth[:, :32] = 1
    predicted = truth.copy()
    assert semantic_outcome(predicted, truth, 1, "disc").expected == "most"
    predicted[:, 10:] = 0  # 10 of 32 columns: IoU 0.31
    assert semantic_outcome(predicted, truth, 1, "disc").expected == "some"
    predicted[:, 4:] = 0  # IoU 0.125
    result = semantic_outcome(predicted, truth, 1, "disc")
    assert result.expected == "little" and "IoU of 'disc' on this image: 0.12" in result.why


def _bright_at(y: int, x: int) -> np.ndarray:
    heat = np.zeros((H, W), np.float32)
    heat[y, x] = 1.0
    return heat


def test_two_methods_are_judged_by_where_each_map_is_brightest() -> None:
    on_disc, on_square, nowhere = _bright_at(15, 10), _bright_at(15, 50), _bright_at(60, 60)
    labels = ["Grad-CAM", "Eigen-CAM"]
    cases = {
        "both": (on_disc, _bright_at(45, 30)),  # the second disc counts too
        "first": (on_disc, on_square),
        "second": (nowhere, on_disc),
        "neither": (on_square, np.zeros((H, W), np.float32)),  # a map with no response points nowhere
    }
    for expected, maps in cases.items():
        outcome = methods_outcome(maps, labels, 0, TRUTH, "disc")
        assert outcome.expected == expected, (expected, outcome.why)
        assert "Grad-CAM's brightest pixel" in outcome.why and "Eigen-CAM's" in outcome.why
    first = step("methods")
    values = {"name": "disc", "first": labels[0], "second": labels[1]}
    assert judge(first, methods_outcome(cases["first"], labels, 0, TRUTH, "disc"), "first", **values).correct
    assert first.choice_text("second", **values) == "Only Eigen-CAM"
