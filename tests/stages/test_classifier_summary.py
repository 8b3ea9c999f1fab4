"""The per-class summary of a trained classifier, on tiny real models: figures checked against values
known by construction (a head that always or never predicts a class) and against the project's own
counts, the warning about classes never predicted, and the command line's output."""

from pathlib import Path

import numpy as np
import pytest
import torch

from wsseg.cli import main
from wsseg.demo.project import create_demo_project
from wsseg.models.classifier import ClassifierConfig, PeakClassifier
from wsseg.models.normalise import to_tensor
from wsseg.models.peaks import find_peaks
from wsseg.stages.classifier_summary import (
    never_predicted,
    never_predicted_warning,
    summarise_classifier,
    summary_lines,
    summary_rows,
)
from wsseg.stages.recipes import INFERENCE_PEAKS
from wsseg.store.project import Project

CLASSES = ("a", "b", "c")


def _biased_model(bias: tuple[float, ...]) -> PeakClassifier:
    """A small real classifier whose class scores are exactly ``bias`` (a zero head, global average
    pooling): class k is predicted in every image when bias[k] > 0, in none when it is < 0."""
    torch.manual_seed(0)
    model = PeakClassifier(
        ClassifierConfig(num_classes=len(bias), backbone="small", small_width=8, peak_stimulation=False)
    )
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor(bias))
    return model.eval()


@pytest.fixture()
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (6, 48, 48, 3), dtype=np.uint8)
    targets = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [1, 0, 0], [0, 1, 0], [1, 0, 0]], np.float32)
    return images, targets


def test_counts_ap_and_predictions_match_what_the_model_was_built_to_do(data) -> None:
    images, targets = data
    model = _biased_model((2.0, -2.0, 1.0))
    summary = summarise_classifier(model, images, targets, CLASSES, "training")
    rows = summary["per_class"]
    assert summary["images"] == 6 and summary["split"] == "training"
    assert [rows[c]["images"] for c in CLASSES] == [4, 3, 0]  # the tags, counted by hand
    assert [rows[c]["predicted"] for c in CLASSES] == [6, 0, 6]  # positive bias: every image; negative: none
    # Every image gets the same score: one tied threshold, so the AP is the share of tagged images.
    assert rows["a"]["ap"] == pytest.approx(4 / 6, abs=1e-4)
    assert rows["b"]["ap"] == pytest.approx(3 / 6, abs=1e-4)
    assert rows["c"]["ap"] is None  # no tagged image: no AP
    assert rows["b"]["peaks"] == 0  # never predicted: never searched for peaks


def test_peaks_are_those_of_the_inference_settings_on_predicted_classes(data) -> None:
    images, targets = data
    torch.manual_seed(1)
    model = PeakClassifier(ClassifierConfig(num_classes=3, backbone="small", small_width=8)).eval()
    summary = summarise_classifier(model, images, targets, CLASSES, "training", batch_size=4)
    expected = np.zeros(3, int)
    predicted = np.zeros(3, int)
    with torch.inference_mode():
        for image in images:
            out = model(to_tensor(image)[None])
            logits = out["logits"][0]
            predicted += (logits > 0).numpy()
            for peak in find_peaks(
                out["crm"][0],
                model.config.peaks,
                class_threshold=0.0,
                class_scores=logits,
                peak_threshold=INFERENCE_PEAKS.peak_threshold,
                relative_threshold=INFERENCE_PEAKS.relative_threshold,
                smooth=INFERENCE_PEAKS.smooth,
                stride=model.stride,
                image_size=image.shape[:2],
            ):
                expected[peak.class_index] += 1
    rows = summary["per_class"]
    assert [rows[c]["peaks"] for c in CLASSES] == expected.tolist()  # batches of 4 = one by one
    assert [rows[c]["predicted"] for c in CLASSES] == predicted.tolist()


def test_the_warning_names_the_classes_never_predicted_and_where_the_peaks_go(data) -> None:
    images, targets = data
    targets[:, 2] = [0, 0, 1, 0, 0, 0]  # "c" is tagged once, so its absence of predictions matters
    summary = summarise_classifier(_biased_model((2.0, -2.0, -1.0)), images, targets, CLASSES, "validation")
    assert never_predicted(summary) == ["b", "c"]
    warning = never_predicted_warning(summary)
    peaks_a = summary["per_class"]["a"]["peaks"]
    assert warning.startswith("The classifier never predicts: b, c — ")
    assert ("every peak is 'a'" in warning) == (peaks_a > 0)
    assert "6 validation image(s)" in warning
    lines = summary_lines(summary)
    assert lines[-1] == f"warning: {warning}" and len(lines) == 2 + 3 + 1
    assert [r["class"] for r in summary_rows(summary)] == list(CLASSES)
    assert summary_rows(summary)[1]["AP (validation)"] == summary["per_class"]["b"]["ap"]
    fine = summarise_classifier(_biased_model((2.0, 1.0, 1.0)), images, targets, CLASSES, "training")
    assert never_predicted(fine) == [] and never_predicted_warning(fine) is None
    assert not summary_lines(fine)[-1].startswith("warning")


def test_training_stores_the_summary_in_the_run(trained: Path) -> None:
    project = Project(trained)
    run = project.latest_run("classifier")
    summary = run.metrics["class_summary"]
    assert summary["split"] == "training" and summary["images"] == project.count_images(split="train")
    for name in project.classes():
        row = summary["per_class"][name]
        assert row["images"] == project.count_images(tag=name, split="train")
        assert 0 <= row["predicted"] <= summary["images"]


def test_train_classifier_prints_the_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "p"
    create_demo_project(root, n_images=4, seed=9)
    args = ["--project", str(root), "--backbone", "small", "--epochs", "1", "--batch-size", "4"]
    assert main(["train-classifier", *args]) == 0
    out = capsys.readouterr().out
    assert "what the classifier learnt, per class (4 training image(s))" in out
    for name in Project(root).classes():
        assert f"  {name} " in out
    first = next(line for line in out.splitlines() if line.startswith("classifier trained:"))
    assert "class_summary" not in first and "epochs_done" in first  # a table below, not a dict in it
