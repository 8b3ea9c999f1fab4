"""The distributed path: proposals through a two-node Ray cluster on this machine (a head and a
worker, one CPU each) equal the single-process run image by image, also when the worker node is
killed mid-run; a run whose driver is killed resumes from what it committed, computing no committed
image again; a local worker process that dies is replaced."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._dying_tasks import always_die, die_once
from wsseg.cli import main
from wsseg.demo.project import create_demo_project
from wsseg.stages.make_proposals import make_proposals
from wsseg.stages.pool import Failed, map_in_order
from wsseg.store.project import Project

IMAGES = 8


def _result(project: Project, run_id: int, image_id: int) -> dict[str, Any]:
    """An image's proposals file without its timing (the one field that differs between runs)."""
    data = json.loads(project.artifact("proposals", run_id, image_id, ".json").read_text())
    data.pop("seconds")
    return data


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A demo project and its proposals from one process (the reference)."""
    root = tmp_path_factory.mktemp("cluster") / "project"
    project = create_demo_project(root, n_images=IMAGES, seed=5)
    return root, make_proposals(project, workers=1)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    from wsseg.stages.cluster import local_cluster

    with local_cluster(nodes=2, cpus=1) as found:
        yield found


def _same_as_single(single: tuple[Path, int], run_id: int) -> None:
    project = Project(single[0])
    for record in project.images():
        assert _result(project, run_id, record.id) == _result(project, single[1], record.id), record.filename


def test_proposals_through_a_two_node_cluster_equal_the_single_process_run(single, cluster) -> None:
    assert len([n for n in cluster.list_all_nodes()]) == 2
    project = Project(single[0])
    run_id = make_proposals(project, cluster=cluster.address)
    run = next(r for r in project.runs("proposals") if r.id == run_id)
    assert run.status == "done" and run.metrics["images"] == IMAGES and "skipped" not in run.metrics
    assert set(project.committed_images(run_id)) == {r.id for r in project.images()}
    _same_as_single(single, run_id)


def test_a_worker_node_killed_mid_run_leaves_a_complete_run(single, cluster) -> None:
    """The node is killed after the driver has stored two images, with others in flight on it: Ray
    runs them again on the head and the run ends done, every image equal to the single run."""
    extra = cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1", object_store_memory=100 * 2**20)
    cluster.wait_for_nodes()
    project = Project(single[0])
    seen: list[int] = []

    def progress(done: int, total: int) -> None:
        seen.append(done)
        if done == 2:
            cluster.remove_node(extra, allow_graceful=False)

    run_id = make_proposals(project, cluster=cluster.address, progress=progress)
    assert 2 in seen and seen[-1] == IMAGES
    run = next(r for r in project.runs("proposals") if r.id == run_id)
    assert run.status == "done" and "skipped" not in run.metrics
    _same_as_single(single, run_id)


def test_a_run_whose_driver_is_killed_resumes_without_redoing_committed_images(single, tmp_path) -> None:
    import shutil

    root = tmp_path / "project"
    shutil.copytree(single[0], root)
    project = Project(root)
    before = max(r.id for r in project.runs())
    command = [sys.executable, "-m", "wsseg", "proposals", "--project", str(root), "--workers", "1"]
    driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run_id = None
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and driver.poll() is None:
            runs = [r for r in project.runs("proposals") if r.id > before]
            if runs and len(project.committed_images(runs[0].id)) >= 2:
                run_id = runs[0].id
                break
            time.sleep(0.05)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    assert run_id is not None, "the driver committed no two images"
    committed = project.committed_images(run_id)
    stamps = {i: os.stat(project.artifact("proposals", run_id, i, ".json")).st_mtime_ns for i in committed}
    assert main(["proposals", "--project", str(root), "--resume", str(run_id)]) == 0
    run = next(r for r in project.runs("proposals") if r.id == run_id)
    assert run.status == "done" and run.metrics["images"] == IMAGES
    assert set(project.committed_images(run_id)) == {r.id for r in project.images()}
    for image_id, stamp in stamps.items():  # committed before the kill: not written again
        assert os.stat(project.artifact("proposals", run_id, image_id, ".json")).st_mtime_ns == stamp
    every = [_result(project, run_id, r.id) for r in project.images()]
    assert every == [_result(project, single[1], r.id) for r in project.images()]
    assert run.metrics["proposals"] == sum(len(d["rles"]) for d in every)


def test_resuming_a_finished_run_is_refused_by_name(single, capsys) -> None:
    assert main(["proposals", "--project", str(single[0]), "--resume", str(single[1])]) != 0
    assert f"--resume {single[1]}: that run is done: nothing to resume" in capsys.readouterr().err


def test_a_dead_local_worker_is_replaced_and_its_task_run_again(tmp_path: Path) -> None:
    tasks = [(str(tmp_path / f"m{k}"), k) for k in range(5)]
    Path(tasks[0][0]).write_text("fine")  # task 0 never dies; the others die once each
    assert list(map_in_order(die_once, tasks, workers=2)) == [0, 10, 20, 30, 40]


def test_a_task_that_kills_every_worker_comes_back_failed_and_the_rest_go_on() -> None:
    out = list(map_in_order(always_die, [1, -1, 2, 3], workers=2))
    assert out[0] == 10 and out[2:] == [20, 30]
    assert isinstance(out[1], Failed) and out[1].kind == "WorkerDied"


def test_peaks_through_the_cluster_and_two_local_workers_equal_the_in_process_run(
    proposed: Path, cluster, tmp_path: Path
) -> None:
    """Each worker loads the classifier once and writes each image's maps; the driver stores the peaks."""
    import shutil

    import numpy as np

    from wsseg.methods.prm import PRMConfig
    from wsseg.stages.make_peaks import make_peaks

    root = tmp_path / "project"
    shutil.copytree(proposed, root)
    project = Project(root)
    every = PRMConfig(class_threshold=None, max_peaks=4)
    runs = {
        "here": make_peaks(project, prm_config=every),
        "two": make_peaks(project, prm_config=every, workers=2),
        "cluster": make_peaks(project, prm_config=every, cluster=cluster.address),
    }
    for record in project.images():
        found = {}
        for way, run_id in runs.items():
            rows = [(p.class_name, p.y, p.x, p.value) for p in project.peaks(record.id, run_id)]
            with np.load(project.artifact("peaks", run_id, record.id, ".npz")) as data:
                found[way] = (rows, {k: data[k].copy() for k in data.files})
        assert found["here"][0], record.filename  # every class's peaks: never empty
        for way in ("two", "cluster"):
            assert found[way][0] == found["here"][0], (way, record.filename)
            assert all(np.array_equal(found[way][1][k], v) for k, v in found["here"][1].items()), way


def test_pseudo_masks_through_the_cluster_equal_the_in_process_run(masked: Path, cluster, tmp_path) -> None:
    import shutil

    from wsseg.stages.make_pseudo_masks import make_pseudo_masks

    root = tmp_path / "project"
    shutil.copytree(masked, root)
    project = Project(root)
    here = make_pseudo_masks(project, workers=1)
    there = make_pseudo_masks(project, cluster=cluster.address)

    def masks(run_id: int) -> list[tuple]:
        rows = project.pseudo_masks(run_id=run_id)
        return sorted((m["image_id"], m["class_name"], m["score"], m["rle"], m["peak_id"]) for m in rows)

    assert masks(here) and masks(there) == masks(here)
    assert set(project.committed_images(there)) == {r.id for r in project.images()}


def test_a_cluster_address_where_nothing_answers_is_refused_before_a_run_is_stored(
    single, capsys: pytest.CaptureFixture[str]
) -> None:
    project = Project(single[0])
    before = [r.id for r in project.runs()]
    assert main(["proposals", "--project", str(single[0]), "--cluster", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert "--cluster 127.0.0.1:1: no Ray cluster answers there" in err and "ray start --head" in err
    assert [r.id for r in project.runs()] == before
    assert main(["proposals", "--project", str(single[0]), "--cluster", "nowhere"]) == 2
    assert "expected HOST:PORT" in capsys.readouterr().err
