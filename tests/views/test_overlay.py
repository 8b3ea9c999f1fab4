"""Overlay compositing, colormaps, CRM-to-pixel mapping, peak drawing and click-to-peak, checked by value."""

import cv2
import numpy as np
import pytest

from wsseg.errors import BadInputError
from wsseg.views.overlay import (
    COLORMAPS,
    OverlayStyle,
    blend,
    colorize,
    colormap_lut,
    crm_to_pixels,
    draw_peaks,
    jpeg_bytes,
    nearest_peak,
    normalize,
    overlay_view,
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
