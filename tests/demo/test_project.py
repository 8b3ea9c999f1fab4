"""``wsseg demo``: the demo project is ready to explore and curate on first open, and building it twice
makes nothing twice."""

from __future__ import annotations

from pathlib import Path

from wsseg.cli import main
from wsseg.demo.project import DEMO_CHECKPOINT, build_demo
from wsseg.store.project import Project


def test_demo_has_peaks_proposals_and_masks_to_curate(tmp_path: Path, capsys) -> None:
    root = tmp_path / "demo"
    assert main(["demo", "--project", str(root), "--images", "6"]) == 0
    assert "every page of the app has content" in capsys.readouterr().out
    project = Project(root)
    images = project.images()
    assert len(images) == 6
    for stage in ("classifier", "peaks", "proposals", "pseudo_masks"):
        run = project.latest_run(stage)
        assert run is not None, stage
    proposals = project.latest_run("proposals")
    files = sorted(p.name for p in project.artifacts("proposals", proposals.id).glob("*.json"))
    assert files == sorted(["config.json", *(f"{r.id}.json" for r in images)])
    masks = project.pseudo_masks(run_id=project.latest_run("pseudo_masks").id)
    assert masks and {m["status"] for m in masks} == {"proposed"}  # a queue to review on Curate
    assert {m["image_id"] for m in masks} <= {r.id for r in images}

    runs = {stage: len(project.runs(stage)) for stage in ("classifier", "peaks", "proposals", "pseudo_masks")}
    assert build_demo(project, DEMO_CHECKPOINT) == {}  # everything is there: nothing is made again
    assert {stage: len(project.runs(stage)) for stage in runs} == runs
