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


def test_without_a_classifier_the_page_points_to_the_pipeline_panel(demo: Path) -> None:
    at = open_page(demo, PAGE)
    assert not at.exception
    text = " ".join(i.value for i in at.info)
    assert "Classifier step" in text and "wsseg" not in text  # no shell command
    assert [link.proto.page for link in at.get("page_link")] == ["project"]


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


def _image_captions(at) -> list[str]:
    return [i.caption for element in at.get("image") for i in element.proto.imgs]


def test_every_map_has_a_colour_bar_that_says_what_0_and_1_mean(trained: Path) -> None:
    at = _loose(open_page(trained, PAGE))
    assert not at.exception
    bars = [c for c in _image_captions(at) if c.startswith("Colour scale")]
    assert len(bars) == 3  # the CAM, the PRM, the strip of every class
    store = Project(trained)
    maps = image_maps(store, store.images(limit=1)[0], open_classifier(store))
    top = float(maps.crm.max())  # "one scale for all classes": 1 is the strongest class map's maximum
    cam, prm, strip = bars
    assert "0 = no response" in cam and f"(raw score {top:.2g})" in cam and cam == strip
    assert prm.startswith("Colour scale of the PRM: 0 = no evidence · 1 = a value of ")
    at.toggle(key="cam_shared").set_value(False).run()
    bars = [c for c in _image_captions(at) if c.startswith("Colour scale")]
    k = first_tagged(store.classes(), store.images(limit=1)[0].tags)
    own = float(maps.crm[k].max())  # the one-epoch classifier may leave the class no positive response
    if own > 0:
        assert f"this class's own maximum here (raw score {own:.2g})" in bars[0]
    else:
        assert "No positive response anywhere: the map shows nothing." in _image_captions(at)
    assert "each map over its own maximum" in bars[-1]  # the strip's bar, the last


def test_a_one_cell_window_draws_and_lists_only_the_strongest_50(trained: Path) -> None:
    at = _loose(open_page(trained, PAGE))
    at.selectbox(key="cam_window").select(1).run()
    assert not at.exception
    heading = next(m.value for m in at.markdown if m.value.startswith("**CAM of "))
    total = int(heading.split("· ")[1].split(" ")[0])
    expected = _expected(trained, window=1, relative_threshold=None, peak_threshold=None)
    assert total == len(expected) > 50
    options = at.selectbox(key="cam_peak").options
    assert [o.split(" · ")[1] for o in options] == expected[:50]  # the strongest, numbered 1 to 50
    assert [int(o.split(" · ")[0]) for o in options] == list(range(1, 51))
    assert f"Drawn and listed: showing the 50 strongest of {total} peaks" in captions(at)


def test_the_classifier_summary_is_shown_with_a_warning_for_classes_never_predicted(trained: Path) -> None:
    at = open_page(trained, PAGE)
    assert not at.exception
    summary = Project(trained).latest_run("classifier").metrics["class_summary"]
    table = next(d.value for d in at.dataframe if "images predicted" in d.value.columns)
    assert list(table["class"]) == list(summary["per_class"])
    assert list(table["images predicted"]) == [r["predicted"] for r in summary["per_class"].values()]
    never = [c for c, r in summary["per_class"].items() if r["predicted"] == 0 and r["images"] > 0]
    warnings = " ".join(w.value for w in at.warning)
    assert ("The classifier never predicts: " + ", ".join(never) in warnings) == bool(never)


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
    assert any(c.startswith(("stored", "computed")) for c in _image_captions(at))  # the PRM's origin
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
