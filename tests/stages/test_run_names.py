"""Runs never replace each other silently: a training command refuses an existing ``--name`` unless
given ``--replace`` or ``--resume``, and ``next_run_name`` offers the first free one."""

from __future__ import annotations

from pathlib import Path

import pytest

from wsseg.cli import main
from wsseg.demo.project import create_demo_project
from wsseg.stages.common import check_new_run, next_run_name, run_exists
from wsseg.stages.train_classifier import load_classifier
from wsseg.store.project import Project


def _train(root: Path, *extra: str) -> int:
    args = ["train-classifier", "--project", str(root), "--epochs", "1", "--batch-size", "4", "--size", "32"]
    return main([*args, "--augment", "none", *extra])


def test_an_existing_run_name_is_refused_without_replace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "p"
    create_demo_project(root, n_images=4, seed=2)
    project = Project(root)
    assert next_run_name(project, "classifier") == "classifier" and not run_exists(project, "classifier")
    assert _train(root) == 0
    first = (root / "checkpoints" / "classifier" / "last.pt").stat().st_mtime_ns
    capsys.readouterr()

    assert _train(root) == 2  # the default name is now an existing run
    err = capsys.readouterr().err
    assert (
        err.count("\n") == 1 and "--name classifier" in err and "--replace" in err and "classifier-2" in err
    )
    assert (root / "checkpoints" / "classifier" / "last.pt").stat().st_mtime_ns == first  # untouched
    assert [r.status for r in project.runs("classifier")] == ["done"]  # nothing recorded

    assert _train(root, "--name", next_run_name(project, "classifier")) == 0
    assert load_classifier(project, "classifier-2")[1] == project.classes()
    assert next_run_name(project, "classifier") == "classifier-3"
    assert next_run_name(project, "classifier", taken=["classifier-3"]) == "classifier-4"

    assert _train(root, "--replace") == 0
    assert (root / "checkpoints" / "classifier" / "last.pt").stat().st_mtime_ns != first
    assert [r.config["name"] for r in project.runs("classifier")] == [
        "classifier",
        "classifier-2",
        "classifier",
    ]
    check_new_run(project, "classifier", replace=False, resume=True)  # resuming continues it: allowed


def test_a_frozen_backbone_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --weights it is refused by name before any run is stored; with a weights file the stored
    classifier says so and its backbone is still the file's."""
    import torch
    import torchvision

    root = tmp_path / "p"
    create_demo_project(root, n_images=4, seed=2)
    assert _train(root, "--backbone", "mobilenet_v2", "--frozen-backbone") == 2
    assert "--frozen-backbone: needs --weights" in capsys.readouterr().err
    assert Project(root).runs("classifier") == []
    reference = torchvision.models.mobilenet_v2(weights=None)
    torch.save(reference.state_dict(), tmp_path / "mnv2.pth")
    weights = ["--weights", str(tmp_path / "mnv2.pth")]
    assert _train(root, "--backbone", "mobilenet_v2", *weights, "--frozen-backbone") == 0
    state = torch.load(root / "checkpoints" / "classifier" / "last.pt", weights_only=False)
    assert state["extra"]["model"]["frozen_backbone"] is True
    first = reference.state_dict()["features.0.0.weight"]
    assert torch.equal(state["model"]["backbone.body.features.0.0.weight"], first)
