"""``wsseg bench --scale``: the proposals stage past one process, measured in one run.

On a fresh demo project the stage runs end to end (``make_proposals``: the work, the driver's
database writes) four ways: in this process on one thread (``one``: one worker), in two local worker
processes (``two``), and on a two-node Ray cluster started on this machine's loopback, a head and a
worker with one CPU each (``cluster``). Each way gets a warm-up on two images first (the pool's fork
server and Ray's workers import torch once), so the figures are steady throughput; the cluster's start
is timed apart. Every image's proposals from ``two`` and ``cluster`` are compared with ``one``'s.

Keys: ``scale.proposals.images_per_s.{one,two,cluster}``, ``scale.proposals.speedup_two`` (two / one),
``scale.proposals.speedup_cluster`` (cluster / one), ``scale.proposals.engine_overhead`` (the share
of the plain pool's throughput the cluster loses: 1 - cluster / two), ``scale.cluster_start_s``,
``scale.cluster_matches_single`` and ``scale.two_matches_single`` (true when every image's result
equals the one-process run's). ``devices``: a classifier epoch, a batch of PRMs and a Mask R-CNN step
on the CPU and on every GPU torch sees, with CPU / GPU ratios (``wsseg.bench.devices``).
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import cv2
import torch
from threadpoolctl import threadpool_limits

from wsseg.bench.devices import measure_devices
from wsseg.demo.project import create_demo_project
from wsseg.fileio import write_json
from wsseg.stages.cluster import local_cluster
from wsseg.stages.make_proposals import make_proposals
from wsseg.store.project import Project

#: Images of the timed runs (quick, full): enough that a run lasts many tasks per worker.
IMAGES = {True: 24, False: 96}


@contextlib.contextmanager
def one_thread_here() -> Iterator[None]:
    """This process's numerical libraries on one thread inside, as they were after (the ``one`` arm:
    the work as one worker process would do it, in this process)."""
    cv_threads, torch_threads = cv2.getNumThreads(), torch.get_num_threads()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        cv2.setNumThreads(cv_threads)
        torch.set_num_threads(torch_threads)


def _results(project: Project, run_id: int) -> dict[int, dict[str, Any]]:
    out = {}
    for record in project.images():
        data = json.loads(project.artifact("proposals", run_id, record.id, ".json").read_text())
        data.pop("seconds")  # the one field that differs between runs
        out[record.id] = data
    return out


def _timed(project: Project, **options: Any) -> tuple[int, float]:
    start = time.perf_counter()
    run_id = make_proposals(project, **options)
    return run_id, time.perf_counter() - start


def run_scale(out: Path, quick: bool = False, seed: int = 0, devices: bool = True) -> dict[str, Any]:
    """Measure, write ``out/report.json`` and ``out/report.md``; return the report (``devices``
    False: without the GPU path's section)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    images = IMAGES[quick]
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        project = create_demo_project(Path(tmp) / "project", n_images=images, seed=seed)
        warm = (0, images // 2)  # a warm-up on two images: every other shard of half the images
        with one_thread_here():
            make_proposals(project, shard=warm, workers=1)
            one, one_s = _timed(project, workers=1)
        make_proposals(project, shard=warm, workers=2)
        two, two_s = _timed(project, workers=2)
        started = time.perf_counter()
        with local_cluster(nodes=2, cpus=1) as cluster:
            start_s = time.perf_counter() - started
            make_proposals(project, shard=warm, cluster=cluster.address)
            on_cluster, cluster_s = _timed(project, cluster=cluster.address)
        reference = _results(project, one)
        rates = {"one": images / one_s, "two": images / two_s, "cluster": images / cluster_s}
        report = {
            "scale": {
                "images": images,
                "image_size": [project.images(limit=1)[0].height, project.images(limit=1)[0].width],
                "engine": f"ray {version('ray')}",
                "cluster": "2 nodes on 127.0.0.1 (a head and a worker), 1 CPU each",
                "proposals": {
                    "images_per_s": rates,
                    "speedup_two": rates["two"] / rates["one"],
                    "speedup_cluster": rates["cluster"] / rates["one"],
                    "engine_overhead": 1 - rates["cluster"] / rates["two"],
                },
                "cluster_start_s": start_s,
                "two_matches_single": _results(project, two) == reference,
                "cluster_matches_single": _results(project, on_cluster) == reference,
            },
            "quick": quick,
            "seed": seed,
        }
        if devices:
            report["devices"] = measure_devices(repeats=1 if quick else 3)
    write_json(out / "report.json", report)
    (out / "report.md").write_text(render_scale(report))
    return report


def render_scale(report: dict[str, Any]) -> str:
    scale = report["scale"]
    rates = scale["proposals"]["images_per_s"]
    lines = [
        "# wsseg scale benchmark: the proposals stage past one process",
        "",
        f"{scale['images']} demo images of {scale['image_size'][1]}x{scale['image_size'][0]} px; "
        f"engine {scale['engine']}; cluster: {scale['cluster']}; each way warmed up on 2 images first.",
        "",
        "| way | images / s | vs one |",
        "| --- | --- | --- |",
    ]
    for way, label in (("one", "1 worker"), ("two", "2 local workers"), ("cluster", "2-node Ray cluster")):
        lines.append(f"| {label} | {rates[way]:.2f} | {rates[way] / rates['one']:.2f}x |")
    lines += [
        "",
        f"- engine overhead against the plain pool: {scale['proposals']['engine_overhead']:.1%} of its throughput",
        f"- cluster start: {scale['cluster_start_s']:.1f} s",
        f"- every image equal to the one-process run: two workers {scale['two_matches_single']}, "
        f"cluster {scale['cluster_matches_single']}",
        "",
    ]
    devices = report.get("devices")
    if devices:
        lines += ["## The GPU path", "", "| device | classifier epoch (s) | PRMs (s) | Mask R-CNN step (s) |"]
        lines.append("| --- | --- | --- | --- |")
        for name, t in devices["times"].items():
            label = f"{name} ({t['name']})" if "name" in t else name
            lines.append(
                f"| {label} | {t['classifier_epoch_s']:.3f} | {t['prms_s']:.3f} | {t['maskrcnn_step_s']:.3f} |"
            )
        if devices.get("ratios"):
            r = devices["ratios"]
            lines.append(
                f"| CPU / GPU | {r['classifier_epoch_s']:.1f}x | {r['prms_s']:.1f}x | {r['maskrcnn_step_s']:.1f}x |"
            )
        else:
            lines += ["", "No GPU visible to torch here: CPU times only."]
        lines.append("")
    return "\n".join(lines)
