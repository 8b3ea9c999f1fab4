"""Reliability campaign (``wsseg bench --reliability``): hostile inputs, killed writers, concurrent editors.

Each part does the real thing to a real project and counts what was lost:

- ``hostile_imports``: tagged folders, zips and COCO files built to hurt (garbage and truncated images,
  a decompression bomb, path tricks in names, zip slip, symlinks, a zip bomb, malformed CSV and JSON)
  are imported into a project that already holds images and pseudo masks. Counted: inputs tried,
  crashes (any exception but ``WssegError``), files written outside the project, stored rows or
  files changed.
- ``killed_editors``: a process saves mask edits and acknowledges each after its commit; it is
  killed with SIGKILL at a random moment. Counted: acknowledged edits missing afterwards, problems
  reported by ``Project.check``.
- ``concurrent_editors``: several processes edit the same masks at once with optimistic versions.
  Counted: edits made, conflicts detected (refused, never overwritten), edits lost (history rows and
  mask versions that do not add up).
"""

from __future__ import annotations

import json
import os
import random
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from wsseg.bench.reliability_app import killed_app
from wsseg.bench.reliability_project import png_bytes, seed_project
from wsseg.data.images import content_hash
from wsseg.errors import WssegError
from wsseg.fileio import write_json
from wsseg.store.importer import import_source
from wsseg.store.project import DB_NAME, Project

#: The folder holding the package wsseg (the repository, or site-packages): child processes import it from there.
PACKAGE_PARENT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- a project worth protecting


def snapshot(project: Project) -> dict[str, Any]:
    """Everything stored that an import must not change: image rows and file hashes, masks, edits."""
    with project.reading() as conn:
        images = [
            tuple(r) for r in conn.execute("SELECT id, filename, sha256, width, height, split FROM images")
        ]
        masks = [
            tuple(r)
            for r in conn.execute("SELECT id, image_id, class_id, rle, status, version FROM pseudo_masks")
        ]
        edits = [tuple(r) for r in conn.execute("SELECT * FROM edits")]
    files = {
        str(p.relative_to(project.root)): content_hash(p.read_bytes())
        for p in sorted((project.root / "images").rglob("*"))
        if p.is_file()
    }
    return {"images": images, "masks": masks, "edits": edits, "files": files}


def _lost(before: dict[str, Any], after: dict[str, Any]) -> int:
    """Rows or files of ``before`` missing or changed in ``after``."""
    lost = 0
    for key in ("images", "masks", "edits"):
        lost += len(set(before[key]) - set(after[key]))
    lost += sum(1 for name, digest in before["files"].items() if after["files"].get(name) != digest)
    return lost


# --------------------------------------------------------------------------- hostile inputs


def _png_bomb(width: int = 60_000, height: int = 60_000) -> bytes:
    """A valid PNG header for a huge image, with a tiny compressed body: decoding would need ~10 GB."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = zlib.compress(b"\x00" * 100_000, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def _write_folder(folder: Path, files: dict[str, bytes], csv: str | bytes) -> Path:
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    (folder / "tags.csv").write_bytes(csv.encode() if isinstance(csv, str) else csv)
    return folder


def _write_zip(path: Path, members: dict[str, bytes], symlink: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        if symlink is not None:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (0o120777 << 16) | 0x20  # a symlink entry pointing at /etc/passwd
            zf.writestr(info, "/etc/passwd")
    return path


def hostile_sources(folder: Path, rng: random.Random) -> list[tuple[str, Path]]:
    """Write hostile import sources under ``folder``; return (what it is, path) for each."""
    good = png_bytes(np.full((32, 32, 3), 120, np.uint8))  # MIN_SIDE: a smaller one is refused
    garbage = bytes(rng.getrandbits(8) for _ in range(300))
    sources: list[tuple[str, Path]] = []

    def add(kind: str, make: Callable[[Path], Path]) -> None:
        sources.append((kind, make(folder / f"{len(sources):02d}")))

    add(
        "garbage bytes named .png",
        lambda p: _write_folder(p, {"a.png": garbage}, "filename,tags\na.png,cat\n"),
    )
    add(
        "truncated png",
        lambda p: _write_folder(p, {"a.png": good[: len(good) // 2]}, "filename,tags\na.png,cat\n"),
    )
    add(
        "decompression bomb",
        lambda p: _write_folder(p, {"bomb.png": _png_bomb()}, "filename,tags\nbomb.png,cat\n"),
    )
    add(
        "path tricks in the tags CSV",
        lambda p: _write_folder(
            p,
            {"ok.png": good},
            "filename,tags\n../../escape.png,cat\n/etc/passwd,cat\nok.png,cat\nok.png,dog\n"
            "a\\..\\b.png,cat\nnul\x00.png,cat\n",
        ),
    )
    add(
        "control characters, unicode and huge tags",
        lambda p: _write_folder(
            p,
            {"ünï cødé.png": good, "tab\tname.png": good},
            "filename,tags\nünï cødé.png,chat;😀\ntab\tname.png," + "x" * 5000 + "\n",
        ),
    )
    add(
        "CSV of random bytes",
        lambda p: _write_folder(p, {"a.png": good}, bytes(rng.getrandbits(8) for _ in range(500))),
    )
    add(
        "CSV with wrong columns",
        lambda p: _write_folder(p, {"a.png": good}, "name;labels\na.png;cat\n,,,,\n"),
    )
    add(
        "zip slip and absolute paths",
        lambda p: _write_zip(
            p.with_suffix(".zip"),
            {"../evil.png": good, "/abs/evil.png": good, "tags.csv": b"filename,tags\n../evil.png,cat\n"},
        ),
    )
    add(
        "zip with a symlink",
        lambda p: _write_zip(
            p.with_suffix(".zip"), {"tags.csv": b"filename,tags\nlink.png,cat\n"}, symlink="link.png"
        ),
    )
    add(
        "zip bomb",
        lambda p: _write_zip(
            p.with_suffix(".zip"),
            {"tags.csv": b"filename,tags\nbig.png,cat\n", "big.png": b"\x00" * (64 << 20)},
        ),
    )
    add("not a zip", lambda p: _write_bytes(p.with_suffix(".zip"), garbage))
    for kind, document in _bad_coco_documents(rng):
        add(kind, lambda p, d=document: _write_bytes(p.with_suffix(".json"), d))
    return sources


def _write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _bad_coco_documents(rng: random.Random) -> list[tuple[str, bytes]]:
    valid = {
        "images": [{"id": 1, "file_name": "a.png", "width": 16, "height": 16}],
        "categories": [{"id": 1, "name": "cat"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[0, 0, 8, 0, 8, 8]], "iscrowd": 0}
        ],
    }
    mutations: list[tuple[str, Any]] = [
        ("COCO: not JSON", None),
        ("COCO: a list", []),
        ("COCO: images not a list", {**valid, "images": "x"}),
        (
            "COCO: negative size",
            {**valid, "images": [{"id": 1, "file_name": "a.png", "width": -5, "height": 0}]},
        ),
        (
            "COCO: file name escapes",
            {**valid, "images": [{"id": 1, "file_name": "../../x.png", "width": 16, "height": 16}]},
        ),
        (
            "COCO: odd polygon",
            {**valid, "annotations": [{**valid["annotations"][0], "segmentation": [[1, 2, 3]]}]},
        ),
        (
            "COCO: RLE of the wrong size",
            {
                **valid,
                "annotations": [
                    {**valid["annotations"][0], "segmentation": {"size": [3, 3], "counts": "zz"}}
                ],
            },
        ),
        (
            "COCO: unknown category",
            {**valid, "annotations": [{**valid["annotations"][0], "category_id": 99}]},
        ),
        (
            "COCO: huge numbers",
            {**valid, "images": [{"id": 10**30, "file_name": "a.png", "width": 10**12, "height": 10**12}]},
        ),
    ]
    out = []
    for kind, doc in mutations:
        data = bytes(rng.getrandbits(8) for _ in range(200)) if doc is None else json.dumps(doc).encode()
        out.append((kind, data))
    return out


def hostile_imports(work: Path, seed: int = 0) -> dict[str, Any]:
    """Import every hostile source into a seeded project; count crashes, stray writes and losses."""
    sandbox = work / "sandbox"
    project = seed_project(sandbox / "project")
    sources_dir = sandbox / "sources"
    sources_dir.mkdir(parents=True)
    sources = hostile_sources(sources_dir, random.Random(seed))
    outside_before = _listing(sandbox, exclude=(project.root, sources_dir))
    before = snapshot(project)
    crashes: list[str] = []
    refused = 0
    for kind, path in sources:
        try:
            report = import_source(project, path)
            refused += len(report.problems)
        except WssegError:
            refused += 1
        except Exception as exc:  # the whole point: count anything that is not a clear refusal
            crashes.append(f"{kind}: {type(exc).__name__}: {exc}")
    after = snapshot(project)
    stray = _listing(sandbox, exclude=(project.root, sources_dir)) - outside_before
    stray |= {p for p in _listing(project.root) if not _inside_project_layout(project.root, p)}
    return {
        "bad_inputs_tried": len(sources),
        "problems_reported": refused,
        "crashes": len(crashes),
        "crash_details": crashes,
        "writes_outside_project": len(stray),
        "rows_or_files_lost": _lost(before, after),
        "store_problems": len(project.check()),
    }


def _listing(root: Path, exclude: tuple[Path, ...] = ()) -> set[str]:
    out = set()
    for path in root.rglob("*"):
        if any(path == e or e in path.parents for e in exclude):
            continue
        out.add(str(path.relative_to(root)))
    return out


def _inside_project_layout(root: Path, relative: str) -> bool:
    """Every path a project may hold sits under one of its known top-level entries."""
    top = relative.split(os.sep, 1)[0]
    known = {"images", "artifacts", "checkpoints", "exports", "ground_truth.json"}
    return top in known or top.startswith(DB_NAME)


# --------------------------------------------------------------------------- killed and concurrent editors

_EDITOR = """
import random, sys
from wsseg.errors import WssegError
from wsseg.store.project import DB_NAME, Project
project = Project(sys.argv[1])
rng = random.Random(int(sys.argv[2]))
n_edits = int(sys.argv[3])
ids = [m["id"] for m in project.pseudo_masks()]
done = conflicts = 0
while done + conflicts < n_edits:
    mask_id = rng.choice(ids)
    version = next(m["version"] for m in project.pseudo_masks() if m["id"] == mask_id)
    try:
        new = project.edit_mask(mask_id, version, "review", status=rng.choice(["accepted", "rejected"]), author=sys.argv[2])
    except WssegError:
        conflicts += 1
        continue
    done += 1
    print(f"ack {mask_id} {new}", flush=True)
print(f"done {done} {conflicts}", flush=True)
"""


def _editor(project: Project, seed: int, n_edits: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(PACKAGE_PARENT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(
        [sys.executable, "-c", _EDITOR, str(project.root), str(seed), str(n_edits)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def killed_editors(work: Path, rounds: int = 5, seed: int = 0) -> dict[str, Any]:
    """Kill an editing process with SIGKILL at a random moment, ``rounds`` times; every acknowledged
    edit must be stored and the store consistent."""
    rng = random.Random(seed)
    project = seed_project(work / "killed")
    acknowledged: list[tuple[int, int]] = []
    problems = 0
    for r in range(rounds):
        proc = _editor(project, seed * 1000 + r, n_edits=10_000)
        deadline = time.monotonic() + rng.uniform(0.3, 1.5)
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line.startswith("ack"):
                _, mask_id, version = line.split()
                acknowledged.append((int(mask_id), int(version)))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        problems += len(project.check())
    versions = {m["id"]: m["version"] for m in project.pseudo_masks()}
    history = {(e["mask_id"]) for e in project.edit_history()}
    lost = sum(
        1 for mask_id, version in acknowledged if versions.get(mask_id, 0) < version or mask_id not in history
    )
    return {
        "faults_injected": rounds,
        "acknowledged_edits": len(acknowledged),
        "acknowledged_edits_lost": lost,
        "store_problems": problems,
    }


def concurrent_editors(work: Path, editors: int = 3, edits_each: int = 40, seed: int = 0) -> dict[str, Any]:
    """``editors`` processes edit the same few masks at once; no edit may be lost or overwritten."""
    project = seed_project(work / "concurrent", n_images=2, masks_per_image=2)
    procs = [_editor(project, seed * 100 + i, edits_each) for i in range(editors)]
    made = conflicts = 0
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        last = out.strip().splitlines()[-1].split()
        made, conflicts = made + int(last[1]), conflicts + int(last[2])
    history = project.edit_history()
    masks = project.pseudo_masks()
    # Each accepted edit is one history row and one version step; anything else is a lost update.
    version_steps = sum(m["version"] - 1 for m in masks)
    lost = abs(made - len(history)) + abs(made - version_steps)
    return {
        "concurrent_editors": editors,
        "concurrent_edits": made,
        "conflicts_detected": conflicts,
        "edits_lost": lost,
        "store_problems": len(project.check()),
    }


def run_reliability(out: Path, seed: int = 0) -> dict[str, Any]:
    """Run all three parts; write ``out/report.json`` and ``out/report.md``; return the report."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        work = Path(tmp)
        report = {
            "hostile_imports": hostile_imports(work, seed),
            "killed_editors": killed_editors(work, seed=seed),
            "concurrent_editors": concurrent_editors(work, seed=seed),
        }
        if (app := killed_app(work, seed=seed)) is not None:  # absent where app.py is not installed
            report["killed_app"] = app
    losses = (
        "crashes",
        "writes_outside_project",
        "rows_or_files_lost",
        "acknowledged_edits_lost",
        "edits_lost",
        "store_problems",
    )
    report["lost_total"] = sum(
        int(part.get(key, 0)) for part in report.values() if isinstance(part, dict) for key in losses
    )
    write_json(out / "report.json", report)
    (out / "report.md").write_text(render_reliability(report))
    return report


def render_reliability(report: dict[str, Any]) -> str:
    lines = ["# wsseg reliability report", "", "| part | figure | value |", "| --- | --- | --- |"]
    for part, figures in report.items():
        if not isinstance(figures, dict):
            continue
        for key, value in figures.items():
            if key != "crash_details":
                lines.append(f"| {part} | {key} | {value} |")
    lines += ["", f"**Lost or broken, all parts together: {report['lost_total']}** (must be 0)."]
    details = report.get("hostile_imports", {}).get("crash_details") or []
    if details:
        lines += ["", "## Crashes", ""] + [f"- {d}" for d in details]
    return "\n".join(lines) + "\n"
