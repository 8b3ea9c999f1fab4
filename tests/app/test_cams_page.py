"""The CAMs and peaks page (AppTest on real projects: an untrained demo, and one with a classifier and peaks)."""

from pathlib import Path

from tests.app.helpers import captions, first_tagged, image_urls, open_page
from wsseg.store.project import Project
from wsseg.views.cam import PeakSettings, class_peaks, image_maps, open_classifier

PAGE = "pages/cams.py"


def _loose(at):
    """Settings that keep every local maximum, so the tiny test classifier always has peaks (the
    threshold slider at 0 turns the relative threshold off)."""
    at.slider(key="cam_threshold").set_value(0.0).run()
    at.toggle(key="cam_positive").set_value(False).run()
    return at


def test_without_a_classifier_the_page_says_how_to_train_one(demo: Path) -> None:
    at = open_page(demo, PAGE)
    assert not at.exception
    text = " ".join(i.value for i in at.info)
    assert "Train it first" in text and "wsseg train-classifier" in text and "wsseg demo" in text


def test_maps_of_a_stored_image_render_with_numbered_peaks(trained: Path) -> None:
    at = _loose(open_page(trained, PAGE))
    assert not at.exception
    assert at.title[0].value == "CAMs and peaks"
    assert "maps peaks run" in captions(at)
    assert "Viewer rendered in" in captions(at)
    heading = next(m.value for m in at.markdown if m.value.startswith("**CAM of "))
    n_peaks = int(heading.split("· ")[1].split(" ")[0])
    assert n_peaks >= 1 and len(at.selectbox(key="cam_peak").options) == n_peaks
    assert any(m.value.startswith("**PRM of peak 1**") for m in at.markdown)
    assert len(image_urls(at)) >= 2  # the PRM and the per-class strip (the CAM is the click component)
    strip = [c for img in at.get("image") for c in [i.caption for i in img.proto.imgs]]
    assert any("absent" in c for c in strip) and any("tagged" in c for c in strip)


def test_overlay_controls_change_the_pictures(trained: Path) -> None:
    at = _loose(open_page(trained, PAGE))
    before = image_urls(at)
    at.slider(key="cam_opacity").set_value(0.9).run()
    after = image_urls(at)
    assert not at.exception and len(after) == len(before) and after != before
    at.selectbox(key="cam_colormap").select("viridis").run()
    assert image_urls(at) != after


def _expected(project: Path, **settings) -> list[str]:
    """The peaks the page should list for the first image's first tagged class, as (y, x) text."""
    store = Project(project)
    record = store.images(limit=1)[0]
    maps = image_maps(store, record, open_classifier(store))
    peaks = class_peaks(maps, PeakSettings(**settings), first_tagged(store.classes(), record.tags))
    return [f"({p.y}, {p.x})" for p in peaks]


def test_class_threshold_and_window_change_the_peaks(trained: Path) -> None:
    at = _loose(open_page(trained, PAGE))
    loose = dict(relative_threshold=None, peak_threshold=None)
    shown = [o.split(" · ")[1] for o in at.selectbox(key="cam_peak").options]
    assert shown == _expected(trained, **loose) and shown
    at.selectbox(key="cam_window").select(9).run()
    assert not at.exception
    shown = [o.split(" · ")[1] for o in at.selectbox(key="cam_peak").options]
    assert shown == _expected(trained, window=9, **loose)
    at.selectbox(key="cam_class").select(3).run()
    assert any(m.value.startswith("**CAM of star**") for m in at.markdown)


def test_choosing_a_peak_shows_its_prm_and_a_click_chooses_the_nearest(trained: Path) -> None:
    at = _loose(open_page(trained, PAGE))
    options = at.selectbox(key="cam_peak").options
    assert len(options) >= 2
    at.selectbox(key="cam_peak").select(options[1]).run()
    assert any(m.value.startswith("**PRM of peak 2**") for m in at.markdown)
    prm_caption = at.get("image")[0].proto.imgs[0].caption
    assert prm_caption.startswith(("stored", "computed"))
    # a click on the shown picture (480x480 for the 160x160 image) at the last peak's pixel
    y, x = (int(v) for v in options[-1].split("(")[1].split(")")[0].split(", "))
    at.session_state["cam_click"] = {
        "x": 3 * x + 1,
        "y": 3 * y + 1,
        "width": 480,
        "height": 480,
        "unix_time": 1,
    }
    at.run()
    assert not at.exception
    assert at.selectbox(key="cam_peak").value == options[-1]
    assert any(m.value.startswith(f"**PRM of peak {len(options)}**") for m in at.markdown)


def test_an_image_outside_the_peaks_run_is_computed_on_demand(trained: Path) -> None:
    at = open_page(trained, PAGE)
    at.number_input(key="cam_image").set_value(2).run()
    assert not at.exception
    assert "computed by the classifier" in captions(at)
