"""Overlay compositing, colormaps, CRM-to-pixel mapping, peak drawing and click-to-peak, checked by value."""

from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage.color import rgb2lab

from wsseg.errors import BadInputError
from wsseg.store.project import Project
from wsseg.views.cam import image_maps, open_classifier
from wsseg.views.overlay import (
    COLORMAPS,
    MASK_PALETTE,
    OverlayStyle,
    blend,
    colorize,
    colormap_lut,
    colour_bar,
    contrasting_colour,
    crm_to_pixels,
    draw_peaks,
    greyed,
    jpeg_bytes,
    mask_overlay,
    mask_rings,
    nearest_peak,
    normalize,
    overlay_view,
    prm_heat,
    with_colour_bar,
)


@pytest.mark.parametrize("name", list(COLORMAPS))
def test_colormap_lut_is_opencv_table_in_rgb(name: str) -> None:
    lut = colormap_lut(name)
    assert lut.shape == (256, 3) and lut.dtype == np.uint8
    bgr = cv2.applyColorMap(np.array([[200]], np.uint8), COLORMAPS[name])[0, 0]
    assert tuple(lut[200]) == tuple(bgr[::-1])


def test_jet_runs_from_blue_to_red() -> None:
    lut = colormap_lut("jet")
    assert lut[0, 2] > 100 and lut[0, 0] == 0  # dark blue
    assert lut[255, 0] > 100 and lut[255, 2] == 0  # dark red


def test_unknown_colormap_is_refused_by_name() -> None:
    with pytest.raises(BadInputError, match="plasma"):
        colormap_lut("plasma")


def test_blend_matches_the_formula_pixel_by_pixel() -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    heat = rng.uniform(0, 1, (5, 7)).astype(np.float32)
    heat[0, 0], heat[0, 1] = 0.0, 1.0
    out = blend(image, heat, 0.8, "viridis")
    lut = colormap_lut("viridis")
    for y, x in [(0, 0), (0, 1), (2, 3), (4, 6)]:
        w = 0.8 * heat[y, x]
        colour = lut[int(np.rint(heat[y, x] * 255))].astype(float)
        expected = np.rint((1 - w) * image[y, x].astype(float) + w * colour)
        np.testing.assert_allclose(out[y, x], expected, atol=1)
    assert tuple(out[0, 0]) == tuple(image[0, 0])  # no response: the image unchanged
    assert blend(image, heat, 0.0).tolist() == image.tolist()  # opacity 0: the image unchanged


def test_blend_refuses_bad_opacity_and_shapes() -> None:
    image = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(BadInputError, match="opacity"):
        blend(image, np.zeros((4, 4)), 1.5)
    with pytest.raises(BadInputError, match="heat"):
        blend(image, np.zeros((3, 4)), 0.5)


def test_colorize_rounds_to_the_nearest_table_row() -> None:
    out = colorize(np.array([[0.0, 0.5, 1.0]]), "hot")
    lut = colormap_lut("hot")
    assert out[0].tolist() == [lut[0].tolist(), lut[128].tolist(), lut[255].tolist()]


def test_crm_cells_land_on_stride_times_index() -> None:
    crm = np.zeros((4, 5), np.float32)
    crm[2, 3] = 1.0
    pixels = crm_to_pixels(crm, 8, (32, 40))
    assert pixels.shape == (32, 40)
    assert np.unravel_index(pixels.argmax(), pixels.shape) == (16, 24)
    assert pixels[16, 24] == pytest.approx(1.0)
    assert pixels[16, 28] == pytest.approx(0.5)  # half way to the next cell, bilinear
    assert pixels[12, 20] == pytest.approx(0.25)


def test_normalize_clips_negatives_and_uses_the_given_top() -> None:
    values = np.array([-2.0, 0.0, 1.0, 4.0])
    assert normalize(values).tolist() == [0.0, 0.0, 0.25, 1.0]
    assert normalize(values, 8.0).tolist() == [0.0, 0.0, 0.125, 0.5]
    assert normalize(np.array([-1.0, -3.0])).tolist() == [0.0, 0.0]


def test_draw_peaks_marks_the_points_and_nothing_far_away() -> None:
    image = np.full((60, 60, 3), 40, np.uint8)
    out = draw_peaks(image, [(10, 10), (45, 30)], radius=6, selected=1)
    assert out[6, 10].tolist() == [255, 255, 255]  # inside disc 1, above its number
    assert out[41, 30].tolist() == [255, 220, 0]  # inside the selected disc: yellow
    assert out[30, 55].tolist() == [40, 40, 40]
    assert out[8:13, 8:13].max(axis=2).min() < 128  # the dark number
    assert image[10, 10].tolist() == [40, 40, 40]  # the input is not modified
    with pytest.raises(BadInputError, match="labels"):
        draw_peaks(image, [(1, 1)], labels=["1", "2"])


def test_draw_peaks_scales_points_onto_an_enlarged_picture() -> None:
    big = np.zeros((90, 90, 3), np.uint8)
    out = draw_peaks(big, [(10, 20)], scale=3, radius=10)
    # pixel (10, 20) of the original covers rows 30..32, columns 60..62 of the picture: centre (31, 61)
    assert out[31 - 7, 61].tolist() == [255, 255, 255]
    assert out[31, 61 - 7].tolist() == [255, 255, 255]
    assert out[31 + 13, 61].tolist() == [0, 0, 0]


def test_nearest_peak_maps_the_click_through_the_shown_size() -> None:
    points = [(20, 30), (100, 120), (22, 34)]
    # a 160x160 image shown at 480x480: the click (x=91, y=61) is pixel (x=30, y=20)
    assert nearest_peak((91, 61), (480, 480), (160, 160), points) == 0
    assert nearest_peak((101, 67), (480, 480), (160, 160), points) == 2
    # the same image shown at 240x240 (a narrow column): click (x=180, y=150) -> pixel (x=119.8, y=99.8)
    assert nearest_peak((180, 150), (240, 240), (160, 160), points) == 1
    assert nearest_peak((400, 20), (480, 480), (160, 160), points) is None
    assert nearest_peak((400, 20), (480, 480), (160, 160), points, max_distance=500) == 1
    assert nearest_peak((1, 1), (480, 480), (160, 160), []) is None


def test_nearest_peak_ties_go_to_the_stronger_earlier_peak() -> None:
    assert nearest_peak((15, 15), (30, 30), (30, 30), [(15, 10), (15, 20)]) == 0


def test_overlay_view_enlarges_to_about_the_target_and_numbers_peaks() -> None:
    image = np.zeros((160, 160, 3), np.uint8)
    heat = np.zeros((160, 160), np.float32)
    plain = overlay_view(image, heat, OverlayStyle(opacity=0.5))
    assert plain.shape == (480, 480, 3) and plain.max() == 0
    marked = overlay_view(image, heat, OverlayStyle(), points=[(80, 80)])
    assert marked[241 - 8, 241].tolist() == [255, 255, 255]
    assert overlay_view(np.zeros((256, 256, 3), np.uint8), np.zeros((256, 256)), OverlayStyle()).shape == (
        512,
        512,
        3,
    )


def test_jpeg_bytes_decode_to_the_picture() -> None:
    picture = np.zeros((32, 48, 3), np.uint8)
    picture[:, 24:] = 200
    decoded = cv2.imdecode(np.frombuffer(jpeg_bytes(picture), np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (32, 48, 3)
    assert abs(int(decoded[5, 40, 0]) - 200) <= 3 and decoded[5, 5, 0] <= 3


def test_overlay_view_numbers_a_peak_as_given() -> None:
    # Peak 2 of a list drawn alone must read "2", exactly as it does in the full list's picture.
    image = np.full((160, 160, 3), 60, np.uint8)
    heat = np.zeros((160, 160), np.float32)
    first, second = (30, 30), (100, 110)
    full = overlay_view(image, heat, OverlayStyle(), [first, second], selected=1)
    alone = overlay_view(image, heat, OverlayStyle(), [second], selected=0, labels=["2"])
    default = overlay_view(image, heat, OverlayStyle(), [second], selected=0)
    window = np.s_[300 - 14 : 303 + 14, 330 - 14 : 333 + 14]  # around pixel (100, 110) x 3
    assert np.array_equal(alone[window], full[window])
    assert not np.array_equal(default[window], full[window])  # numbered "1" by default


def test_prm_heat_scales_by_the_percentile_of_positive_pixels_then_square_root() -> None:
    prm = np.zeros((20, 20), np.float32)
    prm.flat[:100] = np.arange(1, 101)  # 100 positive values 1..100; the rest 0
    heat, scale = prm_heat(prm)
    top = 1 + 0.95 * 99  # numpy's linear 95th percentile of 1..100, by hand
    assert scale.top == pytest.approx(top) and scale.gamma == 0.5
    assert heat.dtype == np.float32 and heat.shape == prm.shape
    assert heat.flat[24] == pytest.approx(np.sqrt(25 / top), rel=1e-5)  # the value 25
    assert heat.flat[99] == 1.0 and heat.flat[150] == 0.0  # clipped above the top; 0 stays 0
    assert "0 = no evidence" in scale.text and f"{top:.2g}" in scale.text and "square root" in scale.text
    # The colour bar's middle tick names the raw value drawn at 0.5: top / 4 under the square root.
    assert scale.ticks == ("0", f"0.5 = {top / 4:.2g}", f"1 = {top:.2g} or more")
    half = np.full((2, 2), top / 4, np.float32)
    half[0, 0] = top  # the map's own top, so the percentile stays put
    assert prm_heat(half, percentile=100.0)[0][1, 1] == pytest.approx(0.5)
    empty, scale = prm_heat(np.zeros((4, 4)))
    assert not empty.any() and "empty" in scale.text and scale.ticks == ("0", "0.5", "1")
    with pytest.raises(BadInputError, match="gamma"):
        prm_heat(prm, gamma=0)


def _half_colour_share(prm: np.ndarray, heat: np.ndarray) -> float:
    """The share of a PRM's mass on pixels drawn at half colour or more."""
    return float(prm[heat >= 0.5].sum() / prm.sum())


def test_real_prms_show_far_more_of_their_evidence_than_over_their_maximum(trained: Path) -> None:
    project = Project(trained)
    record = project.images(limit=1)[0]
    maps = image_maps(project, record, open_classifier(project))
    prms = [p for p in maps.stored_prms if p.sum() > 0]
    assert prms
    for prm in prms:
        shown = _half_colour_share(prm, prm_heat(prm)[0])
        over_max = _half_colour_share(prm, normalize(prm))
        assert shown > over_max and shown >= 0.3, (shown, over_max)
        # and the drawn area: pixels at half colour or more
        assert (prm_heat(prm)[0] >= 0.5).sum() > (normalize(prm) >= 0.5).sum()


def test_colour_bar_runs_through_the_colormap_with_its_ticks_below() -> None:
    bar = colour_bar("viridis", width=200, height=10)
    lut = colormap_lut("viridis")
    assert bar.shape == (10 + 18, 200, 3) and bar.dtype == np.uint8
    assert bar[5, 1].tolist() == lut[1].tolist()  # just inside the frame: 1/199 of the way -> row 1
    assert bar[5, 100].tolist() == lut[int(np.rint(100 / 199 * 255))].tolist()
    assert bar[5, 198].tolist() == lut[254].tolist()
    below = bar[12:, :, :].min(axis=2)
    assert below[:, :15].min() < 100 and below[:, 190:].min() < 100  # "0" and "1" written
    assert below[:, 40:80].min() == 255  # white between the labels
    shown = with_colour_bar(np.zeros((50, 120, 3), np.uint8), "jet")
    assert shown.shape[1] == 120 and shown.shape[0] > 50 + 18
    assert not shown[:50].any() and shown[50:56].min() == 255  # the picture, then a white gap
    with pytest.raises(BadInputError, match="colour bar"):
        colour_bar("jet", width=10)
    # Labels too long for the width: only the two ends are written, so none overlaps another.
    ticks = ("0", "0.5 = 0.0003", "1 = 0.0012 or more")
    narrow, wide = colour_bar("jet", 160, 10, ticks), colour_bar("jet", 480, 10, ticks)
    # The middle tick's dark line across the bar's lower edge is drawn only with its label.
    middle = lambda bar: bar[6:10, bar.shape[1] // 2 - 1 : bar.shape[1] // 2 + 2].min()  # noqa: E731
    assert middle(wide) <= 60 < middle(narrow)


def test_contrasting_colour_avoids_the_objects_own_colour() -> None:
    image = np.zeros((40, 40, 3), np.uint8)
    image[:] = (255, 105, 180)  # a pink object and surroundings: magenta would not show
    mask = np.zeros((40, 40), bool)
    mask[10:30, 10:30] = True
    chosen = contrasting_colour(image, mask)
    pink = rgb2lab(np.array([[[255, 105, 180]]], np.uint8))[0, 0]
    distances = [np.linalg.norm(rgb2lab(np.array([[c]], np.uint8))[0, 0] - pink) for c in MASK_PALETTE]
    assert chosen == MASK_PALETTE[int(np.argmax(distances))] and chosen != (255, 0, 255)
    image[:] = (0, 230, 60)  # on green, green is never chosen
    assert contrasting_colour(image, mask) != (0, 230, 60)
    assert contrasting_colour(image, np.zeros((40, 40), bool)) == MASK_PALETTE[0]


def test_mask_overlay_fills_and_draws_a_dark_and_a_light_outline() -> None:
    image = np.full((30, 30, 3), 100, np.uint8)
    mask = np.zeros((30, 30), bool)
    mask[10:20, 10:20] = True
    out = mask_overlay(image, mask, colour=(200, 0, 0), alpha=0.5)
    assert out[15, 15].tolist() == [150, 50, 50]  # inside: half image, half colour
    assert out[10, 15].tolist() == [255, 255, 255]  # the light line just inside
    assert out[9, 15].tolist() == [20, 20, 20]  # the dark line just outside
    assert out[0, 0].tolist() == [100, 100, 100]  # the rest unchanged
    outer, inner = mask_rings(mask)
    assert outer.sum() == 12 * 12 - 100 and inner.sum() == 100 - 8 * 8 and not (outer & mask).any()
    only = mask_overlay(image, mask, colour=(200, 0, 0), alpha=0.0)
    assert only[15, 15].tolist() == [100, 100, 100] and only[10, 15].tolist() == [200, 0, 0]
    assert image[15, 15].tolist() == [100, 100, 100]  # the input is not modified
    with pytest.raises(BadInputError, match="mask"):
        mask_overlay(image, mask[:5])


def test_greyed_is_the_luminance_dimmed() -> None:
    image = np.zeros((2, 2, 3), np.uint8)
    image[0, 0] = (255, 0, 0)
    image[1, 1] = (200, 200, 200)
    out = greyed(image, 0.5)
    assert out.shape == image.shape and (out[..., 0] == out[..., 2]).all()
    assert out[1, 1].tolist() == [100, 100, 100]
    assert out[0, 0, 0] == round(0.299 * 255 * 0.5)  # the red pixel's luminance (ITU-R BT.601), halved
    with pytest.raises(BadInputError, match="brightness"):
        greyed(image, 2.0)
