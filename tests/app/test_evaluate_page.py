"""The Evaluate page (AppTest on real projects: one without ground truth, the untrained demo, and the
``masked`` project with a pseudo-masks run made by the CLI, with and without a model's predictions)."""

import shutil
from pathlib import Path

import numpy as np

from tests.app.helpers import image_urls, open_page
from wsseg.stages.evaluate import store_predictions
from wsseg.store.instances import true_instances
from wsseg.store.project import Project
from wsseg.structures import Instances
from wsseg.views.evaluate import eval_runs, score_run, worst_images

PAGE = "pages/evaluate.py"


def _infos(at) -> str:
    return " ".join(i.value for i in at.info)


def test_without_ground_truth_the_page_says_what_it_can_score(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    Project.create(root)
    at = open_page(root, PAGE)
    assert not at.exception
    assert "no ground truth" in _infos(at) and "agree with the tags" in _infos(at)
    assert "wsseg" not in _infos(at)
    assert [link.proto.page for link in at.get("page_link")] == ["project"]


def test_without_runs_the_page_names_the_pipeline_steps(demo: Path) -> None:
    at = open_page(demo, PAGE)
    assert not at.exception
    text = _infos(at)
    for step in ("Pseudo masks step", "Mask R-CNN and Evaluation steps", "Pixel-label estimator step"):
        assert step in text
    assert "wsseg" not in text
    assert [link.proto.page for link in at.get("page_link")] == ["project"]


def _image_captions(at) -> list[str]:
    return [img.caption for element in at.get("image") for img in element.proto.imgs]


def _table(at) -> dict[str, dict]:
    """The metrics table by source; its metric cells are text, 4 decimals or "-" where one does not apply."""
    frame = at.dataframe[0].value
    return {row["source"]: row for row in frame.to_dict("records")}


def test_the_page_scores_the_pseudo_masks_and_the_image_choice_changes_the_pictures(masked: Path) -> None:
    project = Project(masked)
    run = eval_runs(project).pseudo[0]
    expected = score_run(project, run)
    at = open_page(masked, PAGE)
    assert not at.exception
    assert at.title[0].value == "Evaluate"
    row = _table(at)[f"pseudo masks (run {run.id})"]
    assert row["mAP@0.5"] == f"{expected.maps['map50']:.4f}"
    assert row["images"] == len(expected.per_image) == project.count_images()
    assert len(at.get("plotly_chart")) == 2  # AP per class, peak pointing per class
    assert "No model prediction run yet" in _infos(at)  # the prediction column names the commands

    order = worst_images(expected.per_image)
    assert at.selectbox(key="ev_image").value == order[0]
    urls = image_urls(at)
    assert len(urls) == 6 + 4  # the six images in the gallery; image, truth, pseudo masks, difference
    at.selectbox(key="ev_image").set_value(order[-1]).run()
    assert not at.exception
    after = image_urls(at)
    assert after[:6] == urls[:6] and after[6:] != urls[6:]
    assert any(f"image score {expected.per_image[order[-1]]:.2f}" in c for c in _image_captions(at))

    # The gallery's button shows its image in the side-by-side view.
    at.button(key=f"ev_pick_{order[2]}").click().run()
    assert at.selectbox(key="ev_image").value == order[2]

    # The IoU choice redraws the AP chart; the gallery size follows its slider.
    chart = at.get("plotly_chart")[0].proto.spec
    at.radio(key="ev_iou").set_value(0.25).run()
    assert at.get("plotly_chart")[0].proto.spec != chart
    at.slider(key="ev_worst").set_value(4).run()
    assert len(image_urls(at)) == 4 + 4


def test_with_a_model_run_the_prediction_is_shown_and_scores_the_images(masked: Path, tmp_path: Path) -> None:
    root = tmp_path / "project"
    shutil.copytree(masked, root)
    project = Project(root)
    truth = true_instances(project, project.images())
    first = project.images(limit=1)[0].id
    # Predictions through the evaluate stage's writer: the truth, with the first image's masks dropped.
    predictions = {k: Instances(v.masks, v.labels, np.full(len(v), 0.8)) for k, v in truth.items()}
    predictions[first] = Instances.empty(*truth[first].masks.shape[1:])
    run_id = project.start_run("evaluate", {"stage": "maskrcnn", "model": "maskrcnn", "split": None})
    store_predictions(project, run_id, predictions, project.classes(), tmp_path / "predictions.json")
    project.finish_run(run_id, "done", {})

    at = open_page(root, PAGE)
    assert not at.exception
    row = _table(at)[f"model prediction (run {run_id})"]
    assert row["mean image score"] == f"{(len(truth) - 1) / len(truth):.4f}"
    peaks = next(r for source, r in _table(at).items() if source.startswith("peaks"))
    assert peaks["mAP@0.5"] == peaks["count MAE"] == "-"  # not a peaks figure: a dash, not "None"
    assert "No model prediction run yet" not in _infos(at)
    before = image_urls(at)
    at.radio(key="ev_source").set_value("model").run()
    assert not at.exception
    assert at.selectbox(key="ev_image").value == first  # the one image the model missed
    assert "Worst images (model prediction)" in [h.value for h in at.subheader]
    assert image_urls(at) != before


def test_with_peaks_only_the_pointing_accuracy_is_shown_and_the_commands_named(trained: Path) -> None:
    project = Project(trained)
    peaks_run = eval_runs(project).peaks[0]
    at = open_page(trained, PAGE)
    assert not at.exception
    row = _table(at)[f"peaks (run {peaks_run.id})"]
    assert row["images"] == 6  # the peaks run covered every other image of 12
    assert len(row["pointing accuracy"]) == 6 and float(row["pointing accuracy"]) <= 1.0  # "0.dddd"
    assert "Pseudo masks step (Project page)" in _infos(at) and "wsseg " not in _infos(at)  # no shell hint
    assert not at.get("image")  # no gallery and no side-by-side view without instance masks
