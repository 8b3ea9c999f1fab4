"""The app's per-image maps: read from the peaks run when it holds the image, computed otherwise,
and the PRM of a chosen peak the same either way."""

from pathlib import Path

import numpy as np
import pytest
import torch

from wsseg.errors import BadInputError
from wsseg.models.peaks import Peak, PeakConfig, find_peaks
from wsseg.stages.make_peaks import prepare_image
from wsseg.store.project import Project
from wsseg.views.cam import (
    MAX_DRAWN_PEAKS,
    PeakSettings,
    class_peaks,
    classifier_summary,
    image_maps,
    open_classifier,
    peak_label,
    peak_prm,
    shown_peaks,
)


def test_maps_come_from_the_peaks_run_or_from_the_classifier(trained: Path) -> None:
    project = Project(trained)
    classifier = open_classifier(project)
    first, second = project.images(limit=2)  # the peaks run (shard 0/2) holds the first only
    stored = image_maps(project, first, classifier)
    computed = image_maps(project, second, classifier)
    assert stored.source.startswith("peaks run") and len(stored.stored_peaks) > 0
    assert computed.source.startswith("computed") and len(computed.stored_peaks) == 0
    _, tensor = prepare_image(project, second, None)
    with torch.inference_mode():
        crm = classifier.model.class_response_maps(tensor)[0].numpy()
    np.testing.assert_allclose(computed.crm, crm, atol=1e-5)
    # the stored CRM is the same network's (float16 on disk)
    _, tensor = prepare_image(project, first, None)
    with torch.inference_mode():
        crm = classifier.model.class_response_maps(tensor)[0].numpy()
    np.testing.assert_allclose(stored.crm, crm, atol=2e-2 * np.abs(crm).max())
    assert stored.stride == computed.stride == 8


def test_no_classifier_and_no_run_gives_no_maps(demo: Path) -> None:
    project = Project(demo)
    assert open_classifier(project) is None
    assert image_maps(project, project.images(limit=1)[0], None) is None


def test_class_peaks_are_find_peaks_of_that_class(trained: Path) -> None:
    project = Project(trained)
    maps = image_maps(project, project.images(limit=1)[0], open_classifier(project))
    settings = PeakSettings(
        window=5, peak_filter="mean", relative_threshold=0.2, peak_threshold=None, smooth=0.5
    )
    everything = find_peaks(
        maps.crm,
        PeakConfig(window=5, peak_filter="mean"),
        relative_threshold=0.2,
        smooth=0.5,
        image_size=(160, 160),
    )
    for c in range(maps.crm.shape[0]):
        assert class_peaks(maps, settings, c) == [p for p in everything if p.class_index == c]
    looser = PeakSettings(
        window=1, peak_filter="none", relative_threshold=None, peak_threshold=None, smooth=None
    )
    assert len(class_peaks(maps, looser, 0)) > len(class_peaks(maps, settings, 0))


def test_a_stored_prm_equals_the_one_computed_again(trained: Path) -> None:
    project = Project(trained)
    classifier = open_classifier(project)
    maps = image_maps(project, project.images(limit=1)[0], classifier)
    # the run's own settings (no smoothing, no thresholds): its strongest peak is found again
    settings = PeakSettings(relative_threshold=None, peak_threshold=None, smooth=None)
    c = int(maps.stored_peaks[0, 0])
    peak = class_peaks(maps, settings, c)[0]
    assert (peak.y, peak.x) == (int(maps.stored_peaks[0, 1]), int(maps.stored_peaks[0, 2]))
    stored, origin = peak_prm(maps, peak, settings, classifier, "excitation")
    assert origin.startswith("stored")
    fresh, origin = peak_prm(maps, peak, settings, classifier, "gradient")
    assert origin == "computed by the classifier"
    assert stored.shape == fresh.shape == (160, 160)
    assert abs(float(stored.sum()) - 1) < 1e-2 and abs(float(fresh.sum()) - 1) < 1e-3
    recomputed = _computed_excitation(maps, peak, settings, classifier)
    np.testing.assert_allclose(stored, recomputed, atol=2e-3 * recomputed.max() + 1e-6)


def _computed_excitation(maps, peak, settings, classifier) -> np.ndarray:
    """The same peak's excitation PRM with the stored copy hidden, so the classifier computes it."""
    from dataclasses import replace

    hidden = replace(maps, stored_method=None)
    prm, origin = peak_prm(hidden, peak, settings, classifier, "excitation")
    assert origin == "computed by the classifier"
    return prm


def test_without_a_classifier_an_unstored_prm_says_why(trained: Path) -> None:
    project = Project(trained)
    maps = image_maps(project, project.images(limit=1)[0], open_classifier(project))
    peak = class_peaks(maps, PeakSettings(relative_threshold=None, peak_threshold=None, smooth=None), 0)[-1]
    prm, why = peak_prm(maps, peak, PeakSettings(), None, "gradient")
    assert prm is None and "train the classifier" in why


def _peaks(n: int) -> list[Peak]:
    return [Peak(0, k, k, float(n - k), k // 8, k // 8) for k in range(n)]


def test_a_one_cell_window_lists_and_draws_at_most_the_cap_strongest_first(trained: Path) -> None:
    project = Project(trained)
    maps = image_maps(project, project.images(limit=1)[0], open_classifier(project))
    every = [
        p
        for k in range(len(maps.class_scores))
        for p in class_peaks(maps, PeakSettings(window=1, relative_threshold=None, peak_threshold=None), k)
    ]
    assert len(every) > MAX_DRAWN_PEAKS  # a 1-cell window: nearly every cell is a peak
    shown = shown_peaks(every)
    assert shown.peaks == every[:MAX_DRAWN_PEAKS] and shown.total == len(every)
    assert shown.note.startswith(f"showing the {MAX_DRAWN_PEAKS} strongest of {len(every)} peaks")
    few = shown_peaks(_peaks(3))
    assert len(few.peaks) == few.total == 3 and few.note == ""
    assert len(shown_peaks(_peaks(10), limit=4).peaks) == 4
    with pytest.raises(BadInputError, match="limit"):
        shown_peaks(_peaks(2), limit=0)
    assert peak_label(2, Peak(1, 30, 40, 1.5, 0, 0)) == "2 · (30, 40) · +1.50"


def test_the_classifier_summary_is_the_newest_training_runs(trained: Path, tmp_path: Path) -> None:
    project = Project(trained)
    summary = classifier_summary(project)
    assert summary == project.latest_run("classifier").metrics["class_summary"]
    assert set(summary["per_class"]) == set(project.classes())
    assert classifier_summary(project, name="other") is None
    assert classifier_summary(Project.create(tmp_path / "empty")) is None
