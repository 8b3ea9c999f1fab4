import io
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wsseg.data.coco import write_coco
from wsseg.data.images import MIN_SIDE
from wsseg.demo.project import create_demo_project
from wsseg.errors import BadInputError
from wsseg.store.importer import ground_truth, import_source
from wsseg.store.project import Project

ROOT = Path(__file__).resolve().parents[2]


def png(value: int, size: int = 32) -> bytes:  # MIN_SIDE: smaller ones are refused
    buffer = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def make_folder(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "images" / "a.png").write_bytes(png(10))
    (root / "images" / "b.png").write_bytes(png(20))
    (root / "images" / "broken.png").write_bytes(png(30)[:40])
    (root / "images" / "notes.png").write_bytes(b"this is text, not an image")
    (root / "tags.csv").write_text(
        "filename,tags\na.png,cat;dog\nb.png,\nbroken.png,cat\nnotes.png,dog\nmissing.png,cat\n"
    )
    return root


def test_tagged_folder_good_files_in_bad_files_named(tmp_path: Path) -> None:
    project = Project.create(tmp_path / "p")
    report = import_source(project, make_folder(tmp_path / "src"))
    assert sorted(report.imported) == ["a.png", "b.png"]
    named = sorted(p.source for p in report.problems)
    assert any("broken.png" in s for s in named) and any("notes.png" in s for s in named)
    assert any("missing.png" in p.source or "missing.png" in p.message for p in report.problems)
    assert len(report.problems) == 3
    assert {r.filename: r.tags for r in project.images()} == {"a.png": ("cat", "dog"), "b.png": ()}
    assert project.classes() == ["cat", "dog"]
    assert project.check() == []


def test_reimport_skips_duplicates_and_keeps_existing(tmp_path: Path) -> None:
    project = Project.create(tmp_path / "p")
    src = make_folder(tmp_path / "src")
    import_source(project, src)
    before = {r.filename: (project.image_path(r).read_bytes(), r.tags) for r in project.images()}
    again = import_source(project, src)
    assert again.imported == [] and sorted(again.skipped_duplicates) == ["a.png", "b.png"]
    after = {r.filename: (project.image_path(r).read_bytes(), r.tags) for r in project.images()}
    assert after == before


def test_zip_import(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("data/images/x.png", png(1))
        archive.writestr("data/images/y.png", png(2))
        archive.writestr("data/tags.csv", "filename,tags\nx.png,cat\ny.png,dog\n")
        archive.writestr("data/../../escape.png", png(3))
    (tmp_path / "d.zip").write_bytes(buffer.getvalue())
    project = Project.create(tmp_path / "p")
    report = import_source(project, tmp_path / "d.zip")
    assert sorted(report.imported) == ["x.png", "y.png"]
    assert any("escape.png" in p.source or "escape.png" in p.message for p in report.problems)
    assert not (tmp_path / "escape.png").exists()


def test_coco_import_tags_and_ground_truth(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    Image.fromarray(np.zeros((40, 48, 3), np.uint8)).save(tmp_path / "images" / "one.png")
    Image.fromarray(np.full((40, 48, 3), 9, np.uint8)).save(tmp_path / "images" / "two.png")
    masks = np.zeros((2, 40, 48), dtype=bool)
    masks[0, 1:4, 1:5] = True
    masks[1, 5:9, 6:11] = True
    images = [
        {"id": 7, "file_name": "one.png", "width": 48, "height": 40},
        {"id": 8, "file_name": "two.png", "width": 48, "height": 40},
    ]
    write_coco(
        tmp_path / "gt.json", images, ["cat", "dog"], [(masks, np.array([1, 1])), (masks[:0], np.array([]))]
    )
    project = Project.create(tmp_path / "p")
    report = import_source(project, tmp_path / "gt.json")
    assert sorted(report.imported) == ["one.png", "two.png"]
    tags = {r.filename: r.tags for r in project.images()}
    assert tags == {"one.png": ("dog",), "two.png": ()}
    gt = ground_truth(project)
    assert gt is not None
    one = next(r for r in project.images() if r.filename == "one.png")
    stored = gt.instances[one.id]
    assert [i.category for i in stored] == ["dog", "dog"]
    assert np.array_equal(np.stack([i.mask for i in stored]), masks)


def test_missing_source(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="not found"):
        import_source(Project.create(tmp_path / "p"), tmp_path / "nothing")


def test_demo_project_with_ground_truth(tmp_path: Path) -> None:
    project = create_demo_project(tmp_path / "demo", n_images=6, seed=1)
    assert project.count_images() == 6
    assert project.classes() == ["disc", "square", "triangle", "star"]
    gt = ground_truth(project)
    assert gt is not None
    for record in project.images():
        assert record.tags == tuple(sorted({i.category for i in gt.instances[record.id]}))
    # Reopening keeps it as it is.
    assert create_demo_project(tmp_path / "demo", n_images=99).count_images() == 6


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wsseg", *args], capture_output=True, text=True, cwd=ROOT)


def test_cli_import_reports_and_errors(tmp_path: Path) -> None:
    done = _cli("import", str(make_folder(tmp_path / "src")), "--project", str(tmp_path / "p"))
    assert done.returncode == 0, done.stderr
    assert "imported 2 image(s)" in done.stdout
    assert done.stderr.count("refused") == 3 and "refused" not in done.stdout  # refusals are errors
    bad = _cli("import", str(tmp_path / "nope"), "--project", str(tmp_path / "q"))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "nope" in bad.stderr
    assert not (tmp_path / "q").exists()  # no project made for a source that is not there


def test_cli_help_for_every_command() -> None:
    from wsseg.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices  # noqa: SLF001
    for name in commands:
        done = _cli(name, "--help")
        assert done.returncode == 0 and "usage: wsseg " + name in done.stdout, name


def test_demo_checkpoint_is_made_and_installed(tmp_path: Path) -> None:
    from wsseg.demo.project import install_demo_checkpoint, make_demo_checkpoint
    from wsseg.stages.train_classifier import load_classifier

    out = tmp_path / "demo-classifier.pt"
    make_demo_checkpoint(out, tmp_path / "work", images=40, epochs=1)
    assert 0 < out.stat().st_size < 3_000_000  # weights and config only, no optimiser state
    project = create_demo_project(tmp_path / "demo", n_images=4, seed=2)
    run_id = install_demo_checkpoint(project, out)
    assert run_id is not None and project.latest_run("peaks").id == run_id
    model, classes, _ = load_classifier(project)
    assert classes == project.classes() and model.config.small_dilations == (1,)
    assert install_demo_checkpoint(project, out) is None  # never over a classifier already there


def test_images_smaller_than_the_pipeline_can_use_are_refused_by_name_and_the_rest_go_in(
    tmp_path: Path,
) -> None:
    project = Project.create(tmp_path / "p")
    import_source(project, make_folder(tmp_path / "first"))  # a.png and b.png, already stored
    before = {r.filename: project.image_path(r).read_bytes() for r in project.images()}
    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    for name, (height, width) in {
        "dot.png": (1, 1),
        "thumb.png": (20, 20),
        "strip.png": (31, 400),
        "smallest.png": (32, 32),
        "wide.png": (40, 300),
    }.items():
        pixels = np.random.default_rng(height).integers(0, 255, (height, width, 3), np.uint8)
        Image.fromarray(pixels).save(src / "images" / name)
    (src / "tags.csv").write_text(
        "filename,tags\ndot.png,cat\nthumb.png,cat\nstrip.png,dog\nsmallest.png,cat\nwide.png,dog\n"
    )
    report = import_source(project, src)
    assert sorted(report.imported) == ["smallest.png", "wide.png"]
    refused = {p.source: p.message for p in report.problems}
    assert set(refused) == {"images/dot.png", "images/thumb.png", "images/strip.png"}
    assert refused["images/dot.png"].startswith("1x1 pixels is too small")
    assert refused["images/thumb.png"].startswith("20x20 pixels is too small")
    assert refused["images/strip.png"].startswith("400x31 pixels is too small")
    assert all(f"at least {MIN_SIDE}x{MIN_SIDE}" in m for m in refused.values())
    after = {r.filename: project.image_path(r).read_bytes() for r in project.images()}
    assert {k: after[k] for k in before} == before  # nothing stored is lost
    assert sorted(after) == ["a.png", "b.png", "smallest.png", "wide.png"]
    assert project.check() == []
