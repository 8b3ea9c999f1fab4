"""The Project page, run headless with Streamlit's AppTest on real projects."""

from pathlib import Path

from tests.app.helpers import captions, image_urls, open_page


def test_project_page_shows_counts_and_a_pipeline_with_nothing_run(demo: Path) -> None:
    at = open_page(demo)
    assert not at.exception
    assert at.title[0].value == "Project"
    assert "30 images" in at.caption[0].value
    assert "No stage has run yet." in captions(at)
    states = [m.value for m in at.markdown if "[not run]" in m.value]
    assert len(states) == 7  # every step of the panel
    assert at.button(key="pipe_next").proto.label == "Run the next step: Classifier"
    assert at.button(key="pipe_all").proto.label == "Run every remaining step (7)"
    assert at.button(key="pipe_stop").proto.disabled
    infos = " ".join(i.value for i in at.info)
    assert "Pseudo masks step" in infos and "wsseg" not in infos  # no shell command


def test_pipeline_status_lists_the_runs_with_their_config(trained: Path) -> None:
    at = open_page(trained)
    assert not at.exception
    table = at.dataframe[0].value
    assert list(table["stage"]) == ["peaks", "classifier"]
    assert (table["status"] == "done").all()
    assert "model.backbone=small" in table["config"].iloc[1]
    assert "prm.method=excitation" in table["config"].iloc[0]


def test_lineage_shows_each_step_as_a_picture(trained: Path) -> None:
    at = open_page(trained)
    assert not at.exception
    titles = [m.value for m in at.markdown]
    for step in ("**Image and tags**", "**Peak**", "**PRM**", "**Chosen mask**"):
        assert step in titles
    assert any(t.startswith("**CRM of ") for t in titles)
    assert len(image_urls(at)) == 5
    assert "strategy: prm" in captions(at) and "proposal_rank=1" in captions(at)


def test_opening_a_missing_project_shows_an_error(demo: Path, tmp_path: Path) -> None:
    at = open_page(demo)
    at.text_input[0].input(str(tmp_path / "nothing"))
    at.button[0].click().run()
    assert not at.exception
    assert any("not a wsseg project" in e.value for e in at.error)


def test_export_from_the_page_writes_what_the_command_writes(masked: Path, tmp_path: Path) -> None:
    import json
    import shutil

    from wsseg.data.coco import decode_rle
    from wsseg.store.project import Project

    root = tmp_path / "project"
    shutil.copytree(masked, root)
    at = open_page(root)
    at.selectbox(key="export_what").select("pseudo").run()
    at.selectbox(key="export_format").select("coco").run()
    at.button(key="export_prepare").click().run()
    assert not at.exception
    run = at.selectbox(key="export_run").value
    written = root / "artifacts" / "exports" / f"pseudo-run-{run}.json"
    doc = json.loads(written.read_text())
    kept = [
        m
        for m in Project(root).pseudo_masks(run_id=run)
        if m["status"] != "rejected" and decode_rle(m["rle"]).any()
    ]
    assert len(doc["annotations"]) == len(kept) > 0
    assert f"{len(kept)} mask(s) over" in captions(at)
    assert at.get("download_button")  # the file, one click away

    at.selectbox(key="export_format").select("voc").run()
    at.button(key="export_prepare").click().run()
    folder = root / "artifacts" / "exports" / f"pseudo-run-{run}-voc"
    assert (folder / "labelmap.txt").is_file() and (folder / "JPEGImages").is_dir()
