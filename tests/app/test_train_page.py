"""The Train page (AppTest on a copy of the trained test project): a finished job's progress and loss
curve, a real job started and stopped from the page, a refused retrain, and two runs compared."""

import shutil
from pathlib import Path

import pytest

from tests.app.helpers import image_urls, open_page
from wsseg.jobs.table import create_job, get_job, list_jobs, set_status
from wsseg.store.project import Project

PAGE = "pages/train.py"


@pytest.fixture(scope="module")
def project(trained: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained project, copied, with a second classifier run ("other", 1 epoch) and a finished
    job whose loss curve is known."""
    from wsseg.models.classifier import ClassifierConfig
    from wsseg.stages.train_classifier import train_classifier
    from wsseg.training.engine import TrainConfig

    root = tmp_path_factory.mktemp("train-page") / "project"
    shutil.copytree(trained, root)
    store = Project(root)
    config = ClassifierConfig(num_classes=4, backbone="small", small_width=8, peak_stimulation=False)
    train_classifier(
        store, config, TrainConfig(epochs=2, batch_size=6, lr=1e-2, seed=1), name="other", augment=None
    )
    job = create_job(store, "classifier", {"name": "classifier", "epochs": 2})
    set_status(store, job, "running")
    curve = {
        "curve": [[1, 0.9], [2, 0.7], [3, 0.6], [4, 0.4]],
        "epochs": [{"epoch": 1, "classification": 0.8}, {"epoch": 2, "classification": 0.5}],
        "steps": 2,
    }
    set_status(store, job, "done", progress=1.0, message="done", metrics=curve)
    return root


def test_a_finished_job_shows_its_progress_and_loss_curve(project: Path) -> None:
    at = open_page(project, PAGE)
    assert not at.exception
    assert at.title[0].value == "Train"
    bar = at.get("progress")[0].proto
    assert bar.value == 100 and bar.text.startswith("done · 100%")
    chart = at.get("plotly_chart")[0].proto
    assert '"x":[0.5,1.0,1.5,2.0]' in chart.spec.replace(" ", "") and "Loss of job 1" in chart.spec
    assert not {"train_stop", "train_resume"} & {b.key for b in at.button}  # a done job is final
    assert at.dataframe[0].value["status"].tolist()[0] == "done"


def test_start_and_stop_a_real_job_from_the_page(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    at = open_page(project, PAGE)
    at.text_input(key="train_name_classifier").set_value("apptest")
    at.number_input(key="train_epochs_classifier").set_value(500)
    at.number_input(key="train_batch_classifier").set_value(4)
    at.button(key="train_start").click().run()
    assert not at.exception and not at.error
    job = list_jobs(Project(project))[0]
    assert job.active and job.args == {
        "name": "apptest",
        "epochs": 500,
        "batch_size": 4,
        "lr": 0.003,
        "backbone": "small",  # the page names the backbone it shows
    }
    assert at.selectbox(key="train_view").value == job.id
    at.button(key="train_stop").click().run()
    assert not at.exception
    assert get_job(Project(project), job.id).status == "stopped"
    assert at.button(key="train_resume")  # a stopped job offers Resume


def test_bad_settings_and_a_retrain_without_curated_masks_are_refused_by_name(project: Path) -> None:
    at = open_page(project, PAGE)
    before = len(list_jobs(Project(project)))
    at.text_input(key="train_name_classifier").set_value("../escape").run()
    at.button(key="train_start").click().run()
    assert "option name" in at.error[0].value
    at.selectbox(key="train_stage").select("maskrcnn").run()
    at.radio(key="train_source").set_value("curated").run()
    assert at.button(key="train_start").proto.label == "Retrain on curated masks"
    at.button(key="train_start").click().run()
    assert not at.exception and "pseudo-masks run" in at.error[0].value
    assert len(list_jobs(Project(project))) == before


def test_two_classifier_runs_side_by_side(project: Path) -> None:
    at = open_page(project, PAGE)
    runs = Project(project).runs("classifier")
    assert at.selectbox(key="cmp_a").value == runs[0].id and at.selectbox(key="cmp_b").value == runs[1].id
    table = at.dataframe[-1].value
    assert "config.name" in table["what"].tolist() and table["differs"].all()
    captions = [img.caption for element in at.get("image") for img in element.proto.imgs]
    assert len(captions) == 2 and all("CAM of" in c for c in captions)
    assert captions[0].startswith(f"run {runs[0].id}:") and captions[1].startswith(f"run {runs[1].id}:")
    before = image_urls(at)
    at.number_input(key="cmp_image").set_value(2).run()
    assert not at.exception and image_urls(at) != before


def _start_and_stop(at, store: Project):
    """Click Start on the page; stop the job it started at once and return that job."""
    from wsseg.jobs import launch as jobs

    at.button(key="train_start").click().run()
    assert not at.exception and not at.error
    job = list_jobs(store)[0]
    jobs.stop_job(store, job.id)
    return job


def test_a_self_training_round_of_the_estimator_is_started_from_a_finished_run(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    store = Project(project)
    at = open_page(project, PAGE)
    at.selectbox(key="train_stage").select("ple").run()
    at.radio(key="train_ple_labels").set_value("round").run()
    assert not at.exception and "No finished estimator run" in at.info[0].value
    assert not [b for b in at.button if b.key == "train_start"]
    for name, full in (("weak", False), ("upper", True)):
        run = store.start_run("ple", {"name": name, "full": full})
        store.finish_run(run, "done", {})
    at.run()
    assert at.selectbox(key="train_ple_from").options == ["weak"]  # never the ground-truth run
    at.text_input(key="train_name_ple").set_value("round2")
    job = _start_and_stop(at, store)
    # The backbone starts from the newest classifier run ("other", made by the fixture).
    assert (job.args["labels_from"], job.args["init"], job.args["name"]) == ("weak", "other", "round2")


def test_a_mask_rcnn_starts_from_the_newest_small_classifier(project: Path, monkeypatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    store = Project(project)
    at = open_page(project, PAGE)
    at.selectbox(key="train_stage").select("maskrcnn").run()
    box = at.checkbox(key="train_maskrcnn_init")
    assert box.value and "'other'" in box.label  # the fixture's second classifier run is the newest
    at.radio(key="train_source").set_value("truth").run()
    at.text_input(key="train_name_maskrcnn").set_value("from-tags")
    job = _start_and_stop(at, store)
    assert (job.args["init"], job.args["source"], job.args["name"]) == ("other", "truth", "from-tags")
    at.checkbox(key="train_maskrcnn_init").uncheck().run()
    at.text_input(key="train_name_maskrcnn").set_value("from-scratch")
    job = _start_and_stop(at, store)
    assert job.args["name"] == "from-scratch" and "init" not in job.args


def test_a_finished_classifier_job_says_what_it_learnt_per_class(trained: Path, tmp_path: Path) -> None:
    import json

    root = tmp_path / "project"
    shutil.copytree(trained, root)
    store = Project(root)
    run = store.latest_run("classifier")
    job = create_job(store, "classifier", {"name": "classifier", "epochs": 1})
    set_status(store, job, "running")
    set_status(store, job, "done", progress=1.0, message="done", metrics={}, run_id=run.id)
    # What a 1-epoch classifier predicts depends on the machine: the summary is set here, once with
    # every tagged class predicted and once with the first one never predicted.
    summary = run.metrics["class_summary"]
    first = next(c for c, r in summary["per_class"].items() if r["images"] > 0)
    for never in ([], [first]):
        for name, row in summary["per_class"].items():
            row["predicted"] = 0 if name in never else max(row["images"], 1)
        with store.transaction() as conn:
            metrics = {**run.metrics, "class_summary": summary}
            conn.execute("UPDATE runs SET metrics = ? WHERE id = ?", (json.dumps(metrics), run.id))
        at = open_page(root, PAGE)
        assert not at.exception
        heading = f"**What the classifier learnt, per class** ({summary['images']} {summary['split']} images)"
        assert any(m.value == heading for m in at.markdown)
        table = next(d.value for d in at.dataframe if "images tagged" in d.value.columns)
        assert list(table["class"]) == list(summary["per_class"])
        assert list(table["images tagged"]) == [r["images"] for r in summary["per_class"].values()]
        warned = [w.value for w in at.warning if w.value.startswith("The classifier never predicts")]
        if never:
            assert len(warned) == 1 and warned[0].startswith(f"The classifier never predicts: {first} — ")
        else:
            assert warned == []


def test_the_backbone_and_a_weights_file_of_the_project_are_offered(project: Path) -> None:
    (project / "weights").mkdir(exist_ok=True)
    (project / "weights" / "mobilenet_v2_imagenet.pth").write_bytes(b"\0")
    at = open_page(project, PAGE)
    at.selectbox(key="train_backbone_classifier").select("mobilenet_v2").run()
    starts = at.selectbox(key="train_weights_classifier").options
    assert starts[0] == "none (from scratch)" and "weights/mobilenet_v2_imagenet.pth" in starts
    assert not [c for c in at.checkbox if c.key == "train_frozen_classifier"]  # nothing to freeze yet
    at.selectbox(key="train_weights_classifier").select("weights/mobilenet_v2_imagenet.pth").run()
    assert at.checkbox(key="train_frozen_classifier").value is False  # offered with a start, off
    at.selectbox(key="train_backbone_classifier").select("small").run()
    assert not [s for s in at.selectbox if s.key == "train_weights_classifier"]  # small: from scratch only
    assert not [c for c in at.checkbox if c.key == "train_frozen_classifier"]
    assert not at.exception
