"""A hand-made curation project: one 20x30 image, four proposals, three pseudo masks with chosen lineages
(shared by tests/curation/test_queue.py and tests/app/test_curate_page.py)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from wsseg.data.coco import encode_mask
from wsseg.methods.proposals import Proposals
from wsseg.stages.make_proposals import save_proposals
from wsseg.store.project import Project

H, W = 20, 30


def box(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[y0:y1, x0:x1] = True
    return mask


# Four proposals of the one image: two overlapping boxes on the left, one on the right, one large.
PROPOSALS = np.stack([box(2, 10, 2, 10), box(2, 12, 2, 12), box(5, 15, 18, 28), box(0, 20, 0, 30)])


def ranked(*pairs: tuple[int, float]) -> list[dict]:
    return [{"proposal": p, "score": s} for p, s in pairs]


def lineage(peak_id: int, value: float, ranks: list[dict], merged: tuple[int, ...] = ()) -> dict:
    return {
        "peak": {"id": peak_id, "value": value},
        "ranked": ranks,
        "merged_peaks": list(merged),
        "proposal": {"run": 1, "index": ranks[0]["proposal"]},
    }


def tiny_project(root: Path, n_images: int = 1) -> Project:
    """One 20x30 image (``one.png``; more with ``n_images``: ``one_<k>.png``, each the same), classes a
    and b, a proposals run (id 1), a PRM run (id 2) with three masks per image (ids 1-3 on the first)."""
    project = Project.create(root)
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(buffer, format="PNG")
    project.add_classes(["a", "b"])
    names = ["one.png"] + [f"one_{k}.png" for k in range(1, n_images)]
    images = [
        project.add_image(name, buffer.getvalue(), W, H, f"{k:064d}", tags=["a", "b"])
        for k, name in enumerate(names)
    ]
    assert project.start_run("proposals", {}) == 1
    props = Proposals(
        PROPOSALS,
        np.array([4.0, 3.0, 2.0, 1.0], np.float32),
        np.zeros(4, np.int16),
        np.zeros(4, np.int32),
        ("ss",),
    )
    for image in images:
        save_proposals(project.artifact("proposals", 1, image.id, ".json"), props, (H, W))
    project.finish_run(1)
    run = project.start_run("pseudo_masks", {"retrieval": {"strategy": "prm"}, "proposals_run": 1})
    for image in images:
        project.add_pseudo_masks(run, image.id, _rows())
    project.finish_run(run)
    return project


def _rows() -> list[dict]:
    """The three pseudo masks of an image."""
    rows = [
        # clear winner (margin 0.9), strongest peak of class a
        {
            "class_name": "a",
            "rle": encode_mask(PROPOSALS[0]),
            "lineage": lineage(11, 2.0, ranked((0, 1.0), (3, 0.1))),
        },
        # near tie (margin 0.05), weaker peak of class a
        {
            "class_name": "a",
            "rle": encode_mask(PROPOSALS[2]),
            "lineage": lineage(12, 1.0, ranked((2, 1.0), (1, 0.95))),
        },
        # single candidate (margin 1): the only mask of class b
        {"class_name": "b", "rle": encode_mask(PROPOSALS[1]), "lineage": lineage(13, 0.5, ranked((1, 0.7)))},
    ]
    for row in rows:
        row["score"] = row["lineage"]["ranked"][0]["score"]
    return rows
