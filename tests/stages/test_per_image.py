"""``wsseg.stages.per_image``: a per-image stage's run is opened, followed image by image and finished
done with its counts (an image whose work raises a bad-input error or runs out of memory skipped and
named), or failed/stopped with the counts so far; ``Project.artifacts`` is where stages write."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from wsseg.errors import BadInputError
from wsseg.methods.proposals import ProposalConfig
from wsseg.stages.make_proposals import make_proposals
from wsseg.stages.per_image import open_run, print_skipped, run_per_image, skipped_images, skipped_lines
from wsseg.store.project import Project


def _double(x: int) -> int:
    return 2 * x


def _refuse_the_second(x: int) -> int:
    if x == 2:
        raise ValueError(f"image {x} is unreadable")
    return x


def _unreadable_second(x: int) -> int:
    if x == 2:
        raise BadInputError(f"im{x}.png", "corrupt or truncated image (image file is truncated)")
    return 10 * x


def _out_of_memory_at_the_second(x: int) -> int:
    if x == 2:
        raise MemoryError()
    return 10 * x


def _unreadable(x: int) -> int:
    raise BadInputError(f"im{x}.png", "not an image (expected one of: png, jpg)")


def _name(x: int) -> str:
    return f"im{x}.png"


def _interrupted_at_the_second(x: int) -> int:
    if x == 2:
        raise KeyboardInterrupt
    return x


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project.create(tmp_path / "p")


def test_a_run_ends_done_with_its_counts_and_progress_follows_every_image(project: Project) -> None:
    run_id = project.start_run("toy", {})
    stored: list[tuple[int, int]] = []
    calls: list[tuple[int, int]] = []

    def store(task: int, result: int) -> dict[str, int]:
        stored.append((task, result))
        return {"items": result}

    metrics = run_per_image(
        project, run_id, [1, 2, 3, 4], _double, store, ("items", "never"), progress=lambda *a: calls.append(a)
    )
    assert metrics == {"images": 4, "items": 20, "never": 0}
    assert stored == [(1, 2), (2, 4), (3, 6), (4, 8)]  # in task order
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    run = project.runs("toy")[0]
    assert run.status == "done" and run.metrics == metrics and run.finished_at is not None


def test_without_store_the_work_returns_the_counts_and_a_summary_shapes_the_metrics(project: Project) -> None:
    run_id = project.start_run("toy", {})
    metrics = run_per_image(
        project,
        run_id,
        [1.0, 3.0],
        lambda x: {"seconds": x},
        summary=lambda t: {"images": t["images"], "seconds_per_image": t["seconds"] / t["images"]},
    )
    assert metrics == {"images": 2, "seconds_per_image": 2.0}
    assert project.runs("toy")[0].metrics == metrics


def test_a_failure_on_the_second_image_marks_the_run_failed_and_reraises(project: Project) -> None:
    run_id = project.start_run("toy", {})
    stored: list[int] = []
    calls: list[tuple[int, int]] = []

    def store(task: int, result: int) -> dict[str, int]:
        stored.append(task)
        return {"items": result}

    with pytest.raises(ValueError, match="image 2 is unreadable"):
        run_per_image(
            project,
            run_id,
            [1, 2, 3],
            _refuse_the_second,
            store,
            ("items",),
            progress=lambda *a: calls.append(a),
        )
    assert stored == [1] and calls == [(1, 3)]
    run = project.runs("toy")[0]
    assert run.status == "failed" and run.metrics == {"images": 3, "items": 1}


def test_an_interrupted_run_is_stopped(project: Project) -> None:
    run_id = project.start_run("toy", {})
    with pytest.raises(KeyboardInterrupt):
        run_per_image(project, run_id, [1, 2, 3], _interrupted_at_the_second, lambda t, r: {"items": r})
    assert project.runs("toy")[0].status == "stopped"


def test_without_a_run_nothing_is_recorded(project: Project) -> None:
    assert run_per_image(project, None, [1, 2], _double, lambda t, r: {"items": r}) == {
        "images": 2,
        "items": 6,
    }
    assert project.runs() == []


def test_open_run_starts_or_joins_a_run_of_its_stage_and_writes_its_config(project: Project) -> None:
    run_id = open_run(project, "toy", {"k": 1})
    assert project.runs("toy")[0].status == "running"
    assert (project.artifacts("toy", run_id) / "config.json").is_file()
    assert open_run(project, "toy", {"k": 2}, run_id) == run_id  # a second shard joins it
    other = project.start_run("other", {})
    with pytest.raises(BadInputError, match="is not a toy run"):
        open_run(project, "toy", {}, other)


def test_project_artifacts_is_the_folder_a_stage_writes_into(project: Project) -> None:
    rng = np.random.default_rng(0)
    for k in range(3):
        image = rng.integers(0, 255, (24, 32, 3), np.uint8)
        image[4:16, 6:20] = (220, 30, 30)
        data = cv2.imencode(".png", image)[1].tobytes()
        project.add_image(f"im{k}.png", data, 32, 24, hashlib.sha256(data).hexdigest())
    calls: list[tuple[int, int]] = []
    config = ProposalConfig(scales=(50.0,), colour_spaces=("rgb",), max_proposals=5)
    run_id = make_proposals(project, config, progress=lambda *a: calls.append(a))
    written = sorted(p.name for p in project.artifacts("proposals", run_id).iterdir())
    ids = [r.id for r in project.images()]
    assert written == sorted(["config.json", *(f"{i}.json" for i in ids)])
    assert all(project.artifact("proposals", run_id, i, ".json").is_file() for i in ids)
    assert calls == [(1, 3), (2, 3), (3, 3)]
    run = project.latest_run("proposals")
    assert run.id == run_id and run.metrics["images"] == 3 and run.metrics["proposals"] >= 3


@pytest.mark.parametrize("workers", [1, 2])
def test_an_image_with_bad_input_is_skipped_by_name_and_the_run_ends_done(
    project: Project, workers: int
) -> None:
    run_id = project.start_run("toy", {})
    stored: list[tuple[int, int]] = []
    calls: list[tuple[int, int]] = []

    def store(task: int, result: int) -> dict[str, int]:
        stored.append((task, result))
        return {"items": result}

    metrics = run_per_image(
        project,
        run_id,
        [1, 2, 3],
        _unreadable_second,
        store,
        ("items",),
        workers=workers,
        progress=lambda *a: calls.append(a),
        name=_name,
    )
    assert stored == [(1, 10), (3, 30)]  # the others processed, in order
    assert calls == [(1, 3), (2, 3), (3, 3)]  # the skipped one counts as done
    skipped = [{"image": "im2.png", "reason": "corrupt or truncated image (image file is truncated)"}]
    assert metrics == {"images": 3, "items": 40, "skipped": skipped}  # the name once, not in the reason
    run = project.runs("toy")[0]
    assert run.status == "done" and run.metrics == metrics
    assert skipped_lines(run.metrics) == ["im2.png: corrupt or truncated image (image file is truncated)"]


def test_an_image_that_runs_out_of_memory_is_skipped_and_the_run_ends_done(project: Project) -> None:
    run_id = project.start_run("toy", {})
    metrics = run_per_image(
        project, run_id, [1, 2, 3], _out_of_memory_at_the_second, lambda t, r: {"items": r}, name=_name
    )
    assert metrics == {"images": 3, "items": 40, "skipped": [{"image": "im2.png", "reason": "out of memory"}]}
    assert project.runs("toy")[0].status == "done"


def test_a_run_whose_every_image_fails_is_failed_and_names_them(project: Project) -> None:
    run_id = project.start_run("toy", {})
    with pytest.raises(BadInputError, match="none could be processed") as caught:
        run_per_image(project, run_id, [1, 2], _unreadable, lambda t, r: {"items": r}, name=_name)
    assert "im1.png: not an image" in str(caught.value) and "im2.png" in str(caught.value)
    run = project.runs("toy")[0]
    assert run.status == "failed" and [s["image"] for s in skipped_images(run.metrics)] == [
        "im1.png",
        "im2.png",
    ]


def test_a_joined_shard_keeps_the_images_earlier_shards_skipped(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = open_run(project, "toy", {})
    run_per_image(project, run_id, [1, 2], _unreadable_second, lambda t, r: {"items": r}, name=_name)
    run_per_image(
        project, run_id, [3, 4], _out_of_memory_at_the_second, lambda t, r: {"items": r}, name=_name
    )
    run_per_image(
        project, run_id, [2, 5], _out_of_memory_at_the_second, lambda t, r: {"items": r}, name=_name
    )
    run = project.runs("toy")[0]
    # im2 was skipped by the first call and again by the third: named once, with its latest reason
    assert [s["image"] for s in skipped_images(run.metrics)] == ["im2.png"]
    print_skipped(project, run_id)
    assert capsys.readouterr().out.splitlines() == [
        "1 image(s) skipped (nothing stored for them):",
        "  im2.png: out of memory",
    ]
