"""Reliability: hostile imports never crash or write outside the project; killed and concurrent
editors lose no acknowledged edit. Property-based fuzzing of the importers with hypothesis."""

from __future__ import annotations

import contextlib
import io
import json
import string
import warnings
import zipfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsseg.bench.reliability import (
    _listing,
    _lost,
    concurrent_editors,
    hostile_imports,
    killed_editors,
    snapshot,
)
from wsseg.bench.reliability_app import killed_app
from wsseg.bench.reliability_project import png_bytes, seed_project
from wsseg.errors import WssegError
from wsseg.store.importer import import_source

GOOD_PNG = png_bytes(np.full((32, 32, 3), 90, np.uint8))  # MIN_SIDE: a smaller one is refused
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def test_hostile_imports_are_refused_without_damage(tmp_path: Path) -> None:
    result = hostile_imports(tmp_path)
    assert result["bad_inputs_tried"] >= 20
    assert result["crashes"] == 0, result["crash_details"]
    assert result["writes_outside_project"] == 0
    assert result["rows_or_files_lost"] == 0 and result["store_problems"] == 0
    assert result["problems_reported"] >= result["bad_inputs_tried"] - 2  # almost every input names a problem


def test_loss_counter_sees_a_changed_store(tmp_path: Path) -> None:
    """The campaign's own check can fail: a deleted row and a rewritten file are both counted."""
    project = seed_project(tmp_path / "p", n_images=2, masks_per_image=1)
    before = snapshot(project)
    with project.transaction() as conn:
        conn.execute("DELETE FROM pseudo_masks WHERE id = 1")
    (project.root / "images" / "kept_1.png").write_bytes(b"changed")
    assert _lost(before, snapshot(project)) == 2


def test_killed_editor_loses_no_acknowledged_edit(tmp_path: Path) -> None:
    result = killed_editors(tmp_path, rounds=2)
    assert result["acknowledged_edits"] > 0
    assert result["acknowledged_edits_lost"] == 0 and result["store_problems"] == 0


def test_killed_curate_page_loses_no_acknowledged_decision(tmp_path: Path) -> None:
    # 60 masks: more than the page can decide before the kill (0.5 to 3 s after the first decision).
    result = killed_app(tmp_path, rounds=1, n_images=30)
    assert result is not None  # app.py is in the checkout
    assert result["faults_injected"] == 1 and result["acknowledged_decisions"] > 0
    assert result["acknowledged_edits_lost"] == 0 and result["store_problems"] == 0


def test_concurrent_editors_lose_nothing(tmp_path: Path) -> None:
    result = concurrent_editors(tmp_path, editors=3, edits_each=25)
    assert result["concurrent_edits"] + result["conflicts_detected"] == 75
    assert result["edits_lost"] == 0 and result["store_problems"] == 0


def _import_safely(project_root: Path, source: Path) -> None:
    """Import ``source``; only a WssegError may come out; nothing outside the project may appear."""
    from wsseg.store.project import Project

    project = Project.create(project_root)
    outside = _listing(project_root.parent, exclude=(project_root, source))
    before = snapshot(project)
    with contextlib.suppress(WssegError):  # a clear refusal is fine; any other exception fails the test
        import_source(project, source)
    assert _listing(project_root.parent, exclude=(project_root, source)) == outside
    assert _lost(before, snapshot(project)) == 0
    assert project.check() == []


names = st.text(alphabet=string.printable + "éü😀/\\.", min_size=1, max_size=30)


@FUZZ
@given(csv=st.text(max_size=300), filename=names, data=st.sampled_from([GOOD_PNG, b"", b"\x89PNG\r\n\x1a\n"]))
def test_fuzz_tagged_folder(tmp_path_factory, csv: str, filename: str, data: bytes) -> None:
    root = tmp_path_factory.mktemp("fuzz")
    folder = root / "src"
    folder.mkdir()
    (folder / "tags.csv").write_text(csv, encoding="utf-8", errors="surrogatepass")
    safe = filename.replace("/", "_").replace("\\", "_").strip(".") or "x"
    (folder / safe[:50]).write_bytes(data)
    _import_safely(root / "project", folder)


@FUZZ
@given(
    members=st.lists(st.tuples(names, st.sampled_from([GOOD_PNG, b"junk", b""])), max_size=5),
    csv=st.text(max_size=200),
)
def test_fuzz_zip(tmp_path_factory, members: list[tuple[str, bytes]], csv: str) -> None:
    root = tmp_path_factory.mktemp("fuzz")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # duplicate member names are part of the attack
        zf.writestr("tags.csv", csv.encode("utf-8", errors="surrogatepass"))
        for name, data in members:
            zf.writestr(name, data)
    source = root / "src.zip"
    source.write_bytes(buffer.getvalue())
    _import_safely(root / "project", source)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
coco_like = st.fixed_dictionaries(
    {},
    optional={
        "images": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "id": json_values,
                    "file_name": json_values,
                    "width": json_values,
                    "height": json_values,
                },
            ),
            max_size=3,
        ),
        "categories": st.lists(
            st.fixed_dictionaries({}, optional={"id": json_values, "name": json_values}), max_size=3
        ),
        "annotations": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "image_id": json_values,
                    "category_id": json_values,
                    "segmentation": json_values,
                    "iscrowd": json_values,
                },
            ),
            max_size=3,
        ),
    },
)


@FUZZ
@given(document=coco_like | json_values)
def test_fuzz_coco_json(tmp_path_factory, document) -> None:
    root = tmp_path_factory.mktemp("fuzz")
    (root / "a.png").write_bytes(GOOD_PNG)
    source = root / "src.json"
    source.write_text(json.dumps(document))
    _import_safely(root / "project", source)
