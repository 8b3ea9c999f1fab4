import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from wsseg.errors import BadInputError
from wsseg.store.project import DB_NAME, SCHEMA_VERSION, Project, safe_filename

ROOT = Path(__file__).resolve().parents[2]


def _add(project: Project, name: str, data: bytes = b"x", tags: tuple[str, ...] = ()) -> int:
    return project.add_image(name, data, 4, 3, hashlib.sha256(data).hexdigest(), tags).id


def test_create_layout_wal_and_schema(tmp_path: Path) -> None:
    project = Project.create(tmp_path / "p", name="demo")
    for sub in ("images", "artifacts", "checkpoints"):
        assert (tmp_path / "p" / sub).is_dir()
    with sqlite3.connect(tmp_path / "p" / DB_NAME) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert project.name == "demo"
    # Opening again migrates nothing and keeps the name.
    assert Project.create(tmp_path / "p").name == "demo"


def test_artifact_paths_keep_the_layout_existing_projects_have(tmp_path: Path) -> None:
    """Written out by hand: ``artifacts/<stage>/run-<id>/<image id><suffix>``, relative to the project."""
    project = Project.create(tmp_path / "p")
    assert project.artifacts("peaks", 3) == tmp_path / "p" / "artifacts" / "peaks" / "run-3"
    assert project.artifact("proposals", 2, 17, ".json") == tmp_path / "p/artifacts/proposals/run-2/17.json"
    assert not project.artifacts("peaks", 3).exists()  # a path only: nothing is created


def test_open_missing_and_newer_schema(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="not a wsseg project"):
        Project(tmp_path)
    Project.create(tmp_path / "p")
    with sqlite3.connect(tmp_path / "p" / DB_NAME) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(BadInputError, match="newer"):
        Project(tmp_path / "p")


def test_images_tags_filter_and_paging(tmp_path: Path) -> None:
    project = Project.create(tmp_path)
    project.add_classes(["cat", "dog"])
    for i in range(25):
        _add(project, f"im{i}.png", bytes([i]), ("cat",) if i % 2 else ("cat", "dog") if i % 5 == 0 else ())
    assert project.count_images() == 25
    cats = [i for i in range(25) if i % 2 or i % 5 == 0]
    assert project.count_images(tag="cat") == len(cats)
    assert project.count_images(tag="dog") == len([i for i in range(25) if i % 2 == 0 and i % 5 == 0])
    page = project.images(offset=10, limit=5)
    assert [r.filename for r in page] == [f"im{i}.png" for i in range(10, 15)]
    assert project.images(tag="dog")[0].tags == ("cat", "dog")
    assert project.tag_counts() == {"cat": len(cats), "dog": 3}
    project.set_tags(page[0].id, ["dog"])
    assert project.image(page[0].id).tags == ("dog",)


def test_duplicate_and_unsafe_filenames(tmp_path: Path) -> None:
    project = Project.create(tmp_path / "p")
    a = project.add_image("../../evil.png", b"a", 1, 1, "ha")
    b = project.add_image("evil.png", b"b", 1, 1, "hb")
    assert a.filename == "evil.png" and b.filename == "evil_1.png"
    assert not (tmp_path / "evil.png").exists()
    assert safe_filename("a/b\\c\x00d\u00e9.png") == "c_de.png"
    assert safe_filename("\u732b.png") == "image.png"
    assert (tmp_path / "p" / "images" / "evil_1.png").read_bytes() == b"b"
    with pytest.raises(BadInputError, match="leaves the project"):
        project.path("../outside")


def test_edit_history_and_conflict(tmp_path: Path) -> None:
    project = Project.create(tmp_path)
    image = _add(project, "a.png")
    rle = {"size": [3, 4], "counts": "12"}
    mask = project.add_pseudo_mask(image, "cat", rle, strategy="prm", score=1.5)
    v2 = project.edit_mask(mask, 1, "accept", status="accepted", author="ann")
    assert v2 == 2
    with pytest.raises(BadInputError, match="changed by someone else"):
        project.edit_mask(mask, 1, "reject", status="rejected", author="bob")
    (stored,) = project.pseudo_masks(image)
    assert stored["status"] == "accepted" and stored["version"] == 2
    (edit,) = project.edit_history(mask)
    assert edit["before"]["status"] == "proposed" and edit["after"]["status"] == "accepted"


def test_runs_and_peaks(tmp_path: Path) -> None:
    project = Project.create(tmp_path)
    image = _add(project, "a.png")
    run = project.start_run("peaks", {"window": 3})
    project.add_peaks(run, image, [{"class_name": "cat", "y": 1.0, "x": 2.0, "value": 0.5}])
    project.finish_run(run, metrics={"n": 1})
    assert project.latest_run("peaks").metrics == {"n": 1}
    (peak,) = project.peaks(image)
    assert (peak.class_name, peak.y, peak.x) == ("cat", 1.0, 2.0)
    # Rewriting the same run's peaks replaces them.
    project.add_peaks(run, image, [])
    assert project.peaks(image, run) == []


KILLER = """
import hashlib, sys, time
from wsseg.store.project import Project
p = Project(sys.argv[1])
with p.transaction() as conn:
    for i in range(1000):
        conn.execute("INSERT INTO classes (name) VALUES (?)", (f"half{i}",))
        if i == 500:
            print("midway", flush=True)
            time.sleep(30)
"""


def test_transaction_killed_midway_leaves_store_consistent(tmp_path: Path) -> None:
    project = Project.create(tmp_path)
    _add(project, "keep.png", b"keep", ("cat",))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLER, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "midway"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # Nothing of the killed transaction is visible, everything committed before it is.
    assert Project(tmp_path).check() == []
    assert project.classes() == ["cat"]
    assert [r.filename for r in project.images()] == ["keep.png"]
    # And the database is writable again straight away (the killed writer's lock is gone).
    start = time.time()
    _add(project, "after.png", b"after")
    assert time.time() - start < 5
    assert project.count_images() == 2


def test_two_processes_write_concurrently(tmp_path: Path) -> None:
    Project.create(tmp_path)
    script = (
        "import sys; from wsseg.store.project import Project\n"
        "p = Project(sys.argv[1])\n"
        "for i in range(40): p.add_image(f'{sys.argv[2]}{i}.png', b'x', 1, 1, 'h', ('t',))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path), w], env=env) for w in "ab"]
    assert [p.wait() for p in procs] == [0, 0]
    project = Project(tmp_path)
    assert project.count_images() == 80 and project.count_images(tag="t") == 80
    assert project.check() == []


def test_untagged_filter(tmp_path: Path) -> None:
    project = Project.create(tmp_path)
    _add(project, "a.png", b"a", ("cat",))
    _add(project, "b.png", b"b")
    _add(project, "c.png", b"c")
    assert project.count_images(untagged=True) == 2
    assert [r.filename for r in project.images(untagged=True, offset=1, limit=5)] == ["c.png"]


def test_predictions_round_trip_and_replace_per_image(tmp_path: Path) -> None:
    from wsseg.data.coco import decode_rle, encode_mask

    project = Project.create(tmp_path / "p")
    record = project.add_image("a.png", b"x", 8, 6, "h", ["cat"])
    run = project.start_run("evaluate", {})
    m1, m2 = np.zeros((6, 8), bool), np.zeros((6, 8), bool)
    m1[1:3, 2:5], m2[4:, :] = True, True
    rows = [
        {"class_name": "cat", "score": 0.4, "rle": encode_mask(m1)},
        {"class_name": "dog", "score": 0.9, "rle": encode_mask(m2)},
    ]
    project.add_predictions(run, record.id, rows)
    stored = project.predictions(run, record.id)
    assert [(p["class_name"], p["score"]) for p in stored] == [("dog", 0.9), ("cat", 0.4)]
    assert np.array_equal(decode_rle(stored[0]["rle"]), m2) and np.array_equal(
        decode_rle(stored[1]["rle"]), m1
    )
    project.add_predictions(run, record.id, rows[:1])
    assert len(project.predictions(run)) == 1
