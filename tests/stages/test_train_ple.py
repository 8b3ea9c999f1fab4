"""train-ple through the command line on a tiny demo project: run rows, checkpoints, label maps, errors."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wsseg.cli import main
from wsseg.demo.project import create_demo_project
from wsseg.stages.evaluate_ple import evaluate_ple, load_ple
from wsseg.store.project import Project


def _args(root: Path, *extra: str) -> list[str]:
    return ["train-ple", "--project", str(root), "--epochs", "1", "--batch-size", "8", "--size", "64", *extra]


@pytest.fixture(scope="module")
def project_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ple") / "p"
    create_demo_project(root, n_images=8, seed=3)
    return root


def test_train_ple_then_predict_writes_label_maps_and_a_run(project_root: Path) -> None:
    assert main(_args(project_root, "--predict")) == 0
    project = Project(project_root)
    run = project.latest_run("ple")
    assert run is not None and run.metrics["epochs_done"] == 1 and run.config["labels"][0] == "background"
    predicted = project.latest_run("ple_predict")
    assert predicted is not None and 0.0 <= predicted.metrics["miou"] <= 1.0
    folder = project_root / predicted.artifacts
    records = project.images()
    assert sorted(p.name for p in folder.glob("*.png")) == sorted(f"{r.id}.png" for r in records)
    labels = np.asarray(Image.open(folder / f"{records[0].id}.png"))
    assert labels.shape == (records[0].height, records[0].width) and labels.max() < 5
    model, extra = load_ple(project)
    assert not model.training and extra["classes"] == project.classes()


def test_evaluate_command_scores_the_estimator(project_root: Path, capsys) -> None:
    if Project(project_root).latest_run("ple") is None:
        assert main(_args(project_root)) == 0
    capsys.readouterr()
    assert main(["evaluate", "--project", str(project_root), "--stage", "ple", "--split", "train"]) == 0
    printed = capsys.readouterr().out
    direct = evaluate_ple(Project(project_root), "ple", "train", write=False)
    assert f"miou                 {direct['miou']:.4f}" in printed and "IoU background" in printed


def test_full_baseline_and_resume_of_a_finished_run(project_root: Path) -> None:
    assert main(_args(project_root, "--full", "--name", "full")) == 0
    before = load_ple(Project(project_root), "full")[0].state_dict()
    assert main(_args(project_root, "--full", "--name", "full", "--resume")) == 0
    after = load_ple(Project(project_root), "full")[0].state_dict()
    assert all(np.array_equal(before[k].numpy(), after[k].numpy()) for k in before)
    result = evaluate_ple(Project(project_root), "full", split=None, write=False)
    assert result["run_id"] is None and set(result["iou"]) == {"background", *Project(project_root).classes()}


def test_cli_errors_are_one_clear_line(project_root: Path, tmp_path: Path, capsys) -> None:
    assert main(_args(tmp_path / "missing")) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "not a wsseg project" in err
    assert main(_args(project_root, "--name", "never", "--resume")) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "nothing to resume" in err
    assert main(_args(project_root, "--init", "no-such-classifier", "--name", "fresh")) == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_self_training_rounds_train_on_the_previous_rounds_refined_labels(project_root: Path, capsys) -> None:
    project = Project(project_root)
    if not (project_root / "checkpoints" / "ple" / "last.pt").exists():
        assert main(_args(project_root)) == 0
    assert main(_args(project_root, "--labels-from", "ple", "--name", "round2", "--confidence", "0.3")) == 0
    run = project.latest_run("ple")
    assert run is not None and run.config["name"] == "round2"
    assert run.config["labels_from"] == "ple" and run.config["confidence"] == 0.3 and not run.config["full"]
    _, extra = load_ple(project, "round2")
    assert extra["labels_from"] == "ple"
    capsys.readouterr()
    assert main(_args(project_root, "--labels-from", "ple", "--full", "--name", "both")) == 2
    assert "cannot go with --full" in capsys.readouterr().err
    assert main(_args(project_root, "--full", "--name", "truth")) == 0
    assert main(_args(project_root, "--labels-from", "truth", "--name", "leak")) == 2
    assert "trained on ground-truth pixel labels" in capsys.readouterr().err
    assert main(_args(project_root, "--labels-from", "round2", "--name", "round3")) == 0
    assert load_ple(project, "round3")[1]["labels_from"] == "round2"
