import numpy as np
import pytest

from wsseg.methods.metrics import average_precision, chance_shares, mean_average_precision, point_stats


def test_average_precision_by_hand() -> None:
    # Ranked: + - + -  -> precision at the two positives 1/1 and 2/3.
    assert average_precision(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 0])) == pytest.approx(
        (1 + 2 / 3) / 2
    )
    assert average_precision(np.array([0.1, 0.2]), np.array([1, 1])) == pytest.approx(1.0)
    assert np.isnan(average_precision(np.array([0.1]), np.array([0])))


def test_average_precision_ties_count_as_one_threshold() -> None:
    # Both at 0.5: at that threshold precision is 1/2, recall 1.
    assert average_precision(np.array([0.5, 0.5]), np.array([1, 0])) == pytest.approx(0.5)


def test_mean_average_precision_skips_classes_without_positives() -> None:
    scores = np.array([[0.9, 0.1], [0.2, 0.3]])
    labels = np.array([[1, 0], [0, 0]])
    mean, per_class = mean_average_precision(scores, labels)
    assert mean == pytest.approx(1.0) and np.isnan(per_class[1])


def test_point_stats_by_hand() -> None:
    masks = np.zeros((3, 10, 10), dtype=bool)
    masks[0, 0:4, 0:4] = True  # class 0
    masks[1, 6:10, 6:10] = True  # class 0
    masks[2, 0:4, 6:10] = True  # class 1
    labels = np.array([0, 0, 1])
    peaks = [
        (0, 1.0, 1.0),  # inside instance 0
        (0, 2.0, 2.4),  # inside instance 0 again
        (0, 5.0, 5.0),  # background
        (1, 8.0, 8.0),  # class 1 peak inside a class-0 instance: a miss
        (2, 1.0, 1.0),  # class 2 is not present: ignored
    ]
    stats = point_stats(peaks, masks, labels, present=[0, 1])
    assert stats.peaks == 4 and stats.peaks_in_instance == 2
    assert stats.precision == pytest.approx(0.5)
    assert stats.instances_hit == 1 and stats.recall == pytest.approx(1 / 3)
    # class 0: 3 peaks vs 2 instances; class 1: 1 peak vs 1 instance -> (1 + 0) / 2
    assert stats.count_mae == pytest.approx(0.5)
    both = stats + stats
    assert both.peaks == 8 and both.precision == pytest.approx(0.5)


def test_chance_shares_are_each_tagged_class_s_covered_share_of_the_image() -> None:
    masks = np.zeros((3, 4, 5), bool)
    masks[0, :2, :] = True  # class 0: 10 pixels
    masks[1, 1:3, :] = True  # class 0 again, overlapping: the union is 15 of 20 pixels
    masks[2, 3, 0] = True  # class 2: 1 pixel
    labels = np.array([0, 0, 2])
    assert chance_shares(masks, labels, [2, 0, 0, 1]) == [0.75, 0.05]  # class 1 has no instance
    assert chance_shares(masks, labels, []) == []
