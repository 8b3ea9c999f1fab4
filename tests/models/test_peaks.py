"""Peak stimulation layer and peak finding, on hand-made maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from wsseg.errors import BadInputError
from wsseg.models.peaks import (
    PeakConfig,
    box_max,
    filter_values,
    find_peaks,
    global_average_pooling,
    local_maxima,
    map_to_image,
    peak_stimulation,
    smooth_maps,
)

# Strictly decreasing background (no maxima of its own) plus four bumps. With a 3x3 window the
# local maxima are the 9, 5, 3 and 7; with a 5x5 window the 5 at (1, 3) sees the 9 and is not one.
PEAKS_3 = {(1, 1): 9.0, (1, 3): 5.0, (4, 1): 3.0, (5, 5): 7.0}
PEAKS_5 = {k: v for k, v in PEAKS_3.items() if k != (1, 3)}


def hand_map(background: float = -1.0) -> torch.Tensor:
    """float 1x1x6x6 map."""
    m = background - 0.01 * torch.arange(36, dtype=torch.float32).view(6, 6)
    for (y, x), v in {(0, 0): 1, (0, 1): 2, (1, 0): 2, (1, 2): 2, (2, 1): 2, (0, 2): 1, (2, 0): 1}.items():
        m[y, x] = v
    for (y, x), v in PEAKS_3.items():
        m[y, x] = v
    return m[None, None]


def positions(mask: torch.Tensor) -> set[tuple[int, int]]:
    return {(int(y), int(x)) for y, x in torch.nonzero(mask[0, 0])}


def test_local_maxima_of_a_hand_made_map() -> None:
    assert positions(local_maxima(hand_map(), 3)) == set(PEAKS_3)
    assert positions(local_maxima(hand_map(), 5)) == set(PEAKS_5)


def test_box_max_equals_max_pool() -> None:
    x = torch.randn(2, 3, 11, 9)
    for window in (1, 3, 5, 7):
        assert torch.equal(box_max(x, window), F.max_pool2d(x, window, stride=1, padding=window // 2))


def test_a_plateau_gives_one_peak() -> None:
    flat = torch.zeros(1, 1, 5, 7)
    assert local_maxima(flat, 3).sum() == 1
    # A 1x2 plateau at (2, 1)-(2, 2) and a single peak at (2, 7), both of height 0; every other cell
    # is minus its Chebyshev distance to them, so it has a higher neighbour and is no maximum.
    yy, xx = torch.meshgrid(torch.arange(5), torch.arange(9), indexing="ij")
    dist = [torch.maximum((yy - y).abs(), (xx - x).abs()) for y, x in ((2, 1), (2, 2), (2, 7))]
    two = -torch.stack(dist).amin(dim=0).float()[None, None]
    assert positions(local_maxima(two, 3)) == {(2, 1), (2, 7)}


@pytest.mark.parametrize(
    ("peak_filter", "kept"),
    [
        ("none", set(PEAKS_3)),
        (4.0, {(1, 1), (1, 3), (5, 5)}),
        (8.0, {(1, 1)}),
    ],
)
def test_fixed_filters(peak_filter, kept) -> None:
    out = peak_stimulation(hand_map(), PeakConfig(upsample=1, peak_filter=peak_filter))
    assert positions(out["peaks"]) == kept
    assert out["logits"].item() == pytest.approx(np.mean([PEAKS_3[k] for k in kept]))


def two_regions() -> torch.Tensor:
    """float 1x1x6x6: rows 0-3 fall from a peak 9 at (1, 1), rows 4-5 from a peak 3 at (5, 2)."""
    yy, xx = torch.meshgrid(torch.arange(6), torch.arange(6), indexing="ij")
    high = 9 - 0.1 * torch.maximum((yy - 1).abs(), (xx - 1).abs())
    low = 3 - 0.1 * torch.maximum((yy - 5).abs(), (xx - 2).abs())
    return torch.where(yy < 4, high, low).float()[None, None]


@pytest.mark.parametrize("peak_filter", ["median", "mean"])
def test_median_and_mean_filters(peak_filter: str) -> None:
    crm = two_regions()
    values = np.sort(crm.flatten().numpy())
    by_hand = values[17] if peak_filter == "median" else values.mean()  # lower median of 36 values
    assert filter_values(crm, peak_filter).item() == pytest.approx(by_hand)
    assert positions(local_maxima(crm, 3)) == {(1, 1), (5, 2)}
    out = peak_stimulation(crm, PeakConfig(upsample=1, peak_filter=peak_filter))
    assert positions(out["peaks"]) == {(1, 1)}  # the 3 is below both statistics (about 8.7 and 6.7)
    assert out["logits"].item() == pytest.approx(9.0)
    both = peak_stimulation(crm, PeakConfig(upsample=1, peak_filter="none"))
    assert both["logits"].item() == pytest.approx(6.0)


def test_median_is_the_default_filter() -> None:
    assert PeakConfig().peak_filter == "median" and PeakConfig().window == 3


def test_gradient_flows_only_through_the_peaks() -> None:
    crm = hand_map().requires_grad_(True)
    out = peak_stimulation(crm, PeakConfig(upsample=1, peak_filter="none"))
    out["logits"].sum().backward()
    grad = crm.grad[0, 0]
    assert positions((grad != 0)[None, None]) == set(PEAKS_3)
    assert torch.allclose(grad[grad != 0], torch.tensor(0.25))


def test_gradient_with_upsampling_reaches_only_the_kept_peaks() -> None:
    crm = torch.randn(2, 3, 6, 5, requires_grad=True)
    out = peak_stimulation(crm, PeakConfig(upsample=4))
    out["crm_up"].retain_grad()
    out["logits"].sum().backward()
    assert torch.equal(out["crm_up"].grad != 0, out["peaks"])
    assert out["crm_up"].shape == (2, 3, 24, 20)


def test_no_peak_above_a_fixed_filter_keeps_the_global_maximum() -> None:
    out = peak_stimulation(hand_map(), PeakConfig(upsample=1, peak_filter=100.0))
    assert positions(out["peaks"]) == {(1, 1)}
    assert out["logits"].item() == pytest.approx(9.0)


def test_global_average_pooling() -> None:
    crm = torch.randn(2, 4, 5, 6)
    assert torch.allclose(global_average_pooling(crm)["logits"], crm.mean(dim=(2, 3)))


@pytest.mark.parametrize(
    "kwargs",
    [{"window": 4}, {"window": 0}, {"upsample": 0}, {"peak_filter": "max"}, {"peak_filter": float("nan")}],
)
def test_bad_config(kwargs) -> None:
    with pytest.raises(BadInputError):
        PeakConfig(**kwargs)


def test_find_peaks_coordinates_and_thresholds() -> None:
    crm = torch.cat([hand_map()[0], hand_map()[0] - 20])  # class 1: all negative, score < 0
    peaks = find_peaks(crm, PeakConfig(upsample=1, peak_filter="none"), stride=8, image_size=(48, 48))
    assert [p.value for p in peaks] == sorted((p.value for p in peaks), reverse=True)
    first = peaks[0]
    assert (first.class_index, first.map_y, first.map_x, first.value) == (0, 1, 1, 9.0)
    assert (first.y, first.x) == (8, 8)  # CRM cell i is centred on pixel stride * i
    assert {(p.map_y, p.map_x) for p in peaks if p.class_index == 0} == set(PEAKS_3)
    above = find_peaks(crm, PeakConfig(upsample=1, peak_filter="none"), class_threshold=0.0)
    assert {p.class_index for p in above} == {0}
    strong = find_peaks(
        crm, PeakConfig(upsample=1, peak_filter="none"), class_threshold=0.0, peak_threshold=6.0
    )
    assert {(p.map_y, p.map_x) for p in strong} == {(1, 1), (5, 5)}


def test_find_peaks_with_upsampling_maps_back_to_pixels() -> None:
    crm = torch.zeros(1, 10, 10)
    crm[0, 3, 6] = 1.0  # a single bump centred on pixel (24, 48) for stride 8
    for upsample in (1, 2, 8):
        (peak,) = find_peaks(crm, PeakConfig(upsample=upsample), peak_threshold=0.5, stride=8)
        assert abs(peak.y - 24) <= 8 / upsample and abs(peak.x - 48) <= 8 / upsample
        assert map_to_image(float(peak.map_y), 8, upsample) == pytest.approx(peak.y, abs=0.5)


def test_find_peaks_honours_a_filter_that_keeps_nothing() -> None:
    assert find_peaks(hand_map()[0], PeakConfig(upsample=1, peak_filter=100.0)) == []


def test_find_peaks_relative_threshold_keeps_strong_instances_only() -> None:
    crm = torch.zeros(1, 9, 9)
    crm[0, 1, 1], crm[0, 4, 4], crm[0, 7, 7] = 10.0, 6.0, 2.0
    cfg = PeakConfig(upsample=1, window=3, peak_filter="none")
    values = [p.value for p in find_peaks(crm, cfg, relative_threshold=0.5, stride=1)]
    assert values == [10.0, 6.0]
    assert len(find_peaks(crm, cfg, relative_threshold=None, stride=1)) >= 3


def test_smoothing_merges_ripples_into_one_peak_at_the_blob_centre() -> None:
    yy, xx = torch.meshgrid(torch.arange(21.0), torch.arange(21.0), indexing="ij")
    blob = (2.0 * torch.exp(-((yy - 10) ** 2 + (xx - 10) ** 2) / 40.0)).clamp(max=1.0)  # a plateau
    ripples = 0.15 * torch.cos(yy * 3.0) * torch.cos(xx * 3.0)
    crm = (blob + ripples)[None]
    cfg = PeakConfig(upsample=1, window=3, peak_filter="none")
    assert len(find_peaks(crm, cfg, relative_threshold=0.5, stride=1)) > 1
    (peak,) = find_peaks(crm, cfg, relative_threshold=0.5, stride=1, smooth=1.5)
    assert abs(peak.y - 10) <= 1 and abs(peak.x - 10) <= 1
    # A blur keeps a constant map constant (replicated edges) and preserves the total on the inside.
    flat = torch.full((1, 2, 9, 9), 3.0)
    assert torch.allclose(smooth_maps(flat, 1.0), flat)
