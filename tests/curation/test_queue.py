"""Curation core: queue order on hand-made lineages, actions recorded with before/after, undo/redo,
conflicts, exports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.curation_project import PROPOSALS, box, lineage, ranked, tiny_project
from wsseg.curation import queue as curation
from wsseg.curation.export import export_curated_coco, export_curated_voc
from wsseg.data.coco import decode_rle, encode_mask, read_coco
from wsseg.data.voc import read_voc_map
from wsseg.errors import BadInputError
from wsseg.store.project import Project


@pytest.fixture()
def project(tmp_path: Path) -> Project:
    return tiny_project(tmp_path / "p")


def masks(project: Project) -> list[dict]:
    return project.pseudo_masks()


def test_terms_are_computed_as_documented() -> None:
    assert curation.relative_margin(ranked((0, 1.0), (1, 0.25))) == pytest.approx(0.75)
    assert curation.relative_margin(ranked((0, 1.0))) == 1.0
    assert curation.relative_margin(ranked((0, -1.0), (1, -3.0))) == pytest.approx(1.0)  # clipped
    assert curation.value_ranks([3.0, 1.0, 2.0]) == [1.0, 0.0, 0.5]
    assert curation.value_ranks([1.0, 1.0]) == [0.5, 0.5]
    assert (
        curation.combine({"margin": 0.2, "disagreement": None, "confidence": 0.6}, curation.EQUAL_WEIGHTS)
        == 0.4
    )
    assert curation.combine({"margin": 0.2, "disagreement": None, "confidence": 0.6}) == pytest.approx(0.6)
    assert curation.combine(
        {"margin": 0.2, "confidence": 0.6}, {"margin": 3.0, "confidence": 1.0}
    ) == pytest.approx(0.3)


def test_queue_without_the_other_strategy(project: Project) -> None:
    a1, a2, b = (m["id"] for m in masks(project))
    queue = curation.review_queue(project, weights=curation.EQUAL_WEIGHTS)
    by_id = {item.mask_id: item for item in queue}
    assert by_id[a1].terms == pytest.approx({"margin": 0.1, "confidence": 0.0})
    assert by_id[a2].terms == pytest.approx({"margin": 0.95, "confidence": 1.0})
    assert by_id[b].terms == pytest.approx({"margin": 0.0, "confidence": 0.5})
    assert [item.mask_id for item in queue] == [a2, b, a1]  # errors 0.975, 0.25, 0.05
    assert queue[0].error == pytest.approx(0.975)


def test_disagreement_with_the_wise_run_reorders_the_queue(project: Project) -> None:
    a1, a2, b = (m["id"] for m in masks(project))
    wise = project.start_run("pseudo_masks", {"retrieval": {"strategy": "wise"}, "proposals_run": 1})
    # peak 11: WISE chose proposal 2 (disjoint from PRM's proposal 0); peak 12 was absorbed by peak
    # 11's mask in WISE's NMS (the same as PRM's choice for it); peak 13 has the same mask.
    rows = [
        {
            "class_name": "a",
            "rle": encode_mask(PROPOSALS[2]),
            "lineage": lineage(11, 2.0, ranked((2, 3.0)), merged=(12,)),
        },
        {"class_name": "b", "rle": encode_mask(PROPOSALS[1]), "lineage": lineage(13, 0.5, ranked((1, 3.0)))},
    ]
    project.add_pseudo_masks(wise, 1, rows)
    project.finish_run(wise)
    queue = curation.review_queue(project, run_id=2, weights=curation.EQUAL_WEIGHTS)
    by_id = {item.mask_id: item for item in queue}
    assert by_id[a1].strategy_iou == pytest.approx(0.0)
    assert by_id[a2].strategy_iou == pytest.approx(1.0)  # the mask that absorbed its peak
    assert by_id[b].strategy_iou == pytest.approx(1.0)
    assert by_id[a1].error == pytest.approx((0.1 + 0.0 + 1.0) / 3)
    assert by_id[a2].error == pytest.approx((0.95 + 1.0 + 0.0) / 3)
    assert [item.mask_id for item in queue] == [a2, a1, b]  # b: (0 + 0.5 + 0) / 3
    # without the comparison the order is the one of the margin and confidence alone
    queue = curation.review_queue(project, run_id=2, against_run=-1, weights=curation.EQUAL_WEIGHTS)
    assert [i.mask_id for i in queue] == [a2, b, a1]
    # the default weights leave the margin out: (confidence + disagreement) / 2
    default = {i.mask_id: i.error for i in curation.review_queue(project, run_id=2)}
    assert default == pytest.approx({a1: 0.5, a2: 0.5, b: 0.25})


def test_every_action_is_recorded_with_before_after_and_a_version_bump(project: Project) -> None:
    a1, a2, b = (m["id"] for m in masks(project))
    assert curation.accept(project, a1, 1, author="ann") == 2
    assert curation.reject(project, b, 1, author="ann") == 2
    assert curation.swap(project, a2, 1, rank=1, author="ann") == 2
    assert curation.flag(project, a2, 2, author="ann") == 3
    painted = curation.apply_stroke(PROPOSALS[0], box(0, 2, 0, 30), "paint")
    assert curation.paint(project, a1, 2, painted, author="ann") == 3
    rows = {m["id"]: m for m in masks(project)}
    assert rows[a1]["status"] == "edited" and (decode_rle(rows[a1]["rle"]) == painted).all()
    assert rows[b]["status"] == "rejected"
    assert rows[a2]["status"] == "edited" and rows[a2]["flagged"] == 1
    assert (decode_rle(rows[a2]["rle"]) == PROPOSALS[1]).all()  # rank 1 of a2 is proposal 1
    history = project.edit_history()
    assert [e["action"] for e in history] == ["accept", "reject", "swap", "flag", "paint"]
    assert history[0]["before"]["status"] == "proposed" and history[0]["after"]["status"] == "accepted"
    assert (decode_rle(history[2]["before"]["rle"]) == PROPOSALS[2]).all()
    assert history[3]["before"]["flagged"] is False and history[3]["after"]["flagged"] is True
    assert all(e["author"] == "ann" for e in history)
    log = curation.audit_log(project)
    assert log[0].action == "paint" and "area 64 → 124 px (IoU 0.52)" in log[0].summary
    assert log[-1].summary == "status proposed → accepted"


def test_a_stale_version_is_refused(project: Project) -> None:
    a1 = masks(project)[0]["id"]
    curation.accept(project, a1, 1, author="one")
    with pytest.raises(BadInputError, match="changed by someone else"):
        curation.reject(project, a1, 1, author="two")
    assert masks(project)[0]["status"] == "accepted"
    assert len(project.edit_history()) == 1


def test_undo_redo_round_trip_restores_the_exact_rle(project: Project) -> None:
    a1, a2, _ = (m["id"] for m in masks(project))
    original = {m["id"]: m["rle"] for m in masks(project)}
    curation.swap(project, a2, 1, rank=1, author="ann")
    swapped = masks(project)[1]["rle"]
    stroke = box(10, 20, 0, 30)
    curation.paint(project, a2, 2, curation.apply_stroke(decode_rle(swapped), stroke, "erase"), author="ann")
    painted = masks(project)[1]["rle"]
    curation.accept(project, a1, 1, author="other")  # another author's edit is not in ann's scope
    assert curation.undo(project, author="ann") == a2
    assert masks(project)[1]["rle"] == swapped
    assert curation.undo(project, author="ann") == a2
    assert masks(project)[1]["rle"] == original[a2] and masks(project)[1]["status"] == "proposed"
    assert curation.undo(project, author="ann") is None  # nothing left to undo
    assert curation.redo(project, author="ann") == a2
    assert masks(project)[1]["rle"] == swapped
    assert curation.redo(project, author="ann") == a2
    assert masks(project)[1]["rle"] == painted and masks(project)[1]["status"] == "edited"
    assert curation.redo(project, author="ann") is None
    assert curation.undo(project, author="ann") == a2  # undoing the redo
    assert masks(project)[1]["rle"] == swapped
    assert masks(project)[0]["status"] == "accepted"  # the other author's edit untouched
    history = project.edit_history()
    assert [e["action"] for e in history] == [
        "swap",
        "paint",
        "accept",
        "undo",
        "undo",
        "redo",
        "redo",
        "undo",
    ]
    assert [e["undone"] for e in history] == [1, 1, 0, 1, 1, 0, 1, 0]
    assert history[3]["reverts"] == history[1]["id"] and history[7]["reverts"] == history[6]["id"]
    assert masks(project)[1]["version"] == 1 + len([e for e in history if e["mask_id"] == a2])


def test_a_fresh_edit_clears_redo_and_undo_refuses_to_overwrite(project: Project) -> None:
    a1, a2, _ = (m["id"] for m in masks(project))
    curation.accept(project, a1, 1, author="ann")
    curation.undo(project, author="ann")
    curation.reject(project, a2, 1, author="ann")
    assert curation.redo(project, author="ann") is None
    curation.flag(project, a2, 2, author="ann")
    curation.reject(project, a1, 3, author="bob")  # bob changes a1, ann then undoes her flag: fine
    assert curation.undo(project, author="ann") == a2
    curation.accept(project, a2, masks(project)[1]["version"], author="bob")
    with pytest.raises(BadInputError, match="changed since edit"):
        curation.undo(project, author="ann")  # ann's reject of a2 was overridden by bob


def test_add_a_missed_instance_from_a_click_and_undo_it(project: Project) -> None:
    found = curation.candidates_at(project, 2, 1, (6, 22))
    assert [c.proposal for c in found] == [2, 3]  # best objectness first
    assert found[0].area == 100
    with pytest.raises(BadInputError, match="outside"):
        curation.candidates_at(project, 2, 1, (25, 3))
    new = curation.add_instance(project, 2, 1, "b", found[0].rle, author="ann")
    row = curation.mask_row(project, new)
    assert row["source"] == "user" and row["status"] == "accepted" and row["run_id"] == 2
    assert (decode_rle(row["rle"]) == PROPOSALS[2]).all()
    assert new not in [i.mask_id for i in curation.review_queue(project)]
    curation.undo(project, author="ann")
    assert not decode_rle(curation.mask_row(project, new)["rle"]).any()


def test_export_coco_and_voc_of_the_curated_set(project: Project, tmp_path: Path) -> None:
    a1, a2, b = (m["id"] for m in masks(project))
    curation.accept(project, a1, 1)
    curation.swap(project, a2, 1, rank=0)  # edited, the same shape (proposal 2)
    curation.reject(project, b, 1)
    doc = export_curated_coco(project, 2, tmp_path / "curated.json")
    assert len(doc["annotations"]) == 2
    read = read_coco(tmp_path / "curated.json")
    assert not read.problems
    got = sorted((i.category, int(i.mask.sum()), int(i.mask[6, 22])) for i in read.instances[1])
    assert got == [("a", 64, 0), ("a", 100, 1)]
    # proposed masks only when asked
    curation.undo(project)  # b back to proposed
    assert len(export_curated_coco(project, 2, tmp_path / "c2.json")["annotations"]) == 2
    assert (
        len(export_curated_coco(project, 2, tmp_path / "c3.json", include_proposed=True)["annotations"]) == 3
    )
    curation.redo(project)  # b rejected again: never exported
    paths = export_curated_voc(project, 2, tmp_path / "voc")
    assert [p.name for p in paths] == ["one.png"]
    semantic = read_voc_map(paths[0])
    instance = read_voc_map(tmp_path / "voc" / "SegmentationObject" / "one.png")
    expected_semantic = (PROPOSALS[0] | PROPOSALS[2]).astype(np.uint8)  # class a = label 0 -> value 1
    assert (semantic == expected_semantic).all()
    expected_instance = PROPOSALS[0].astype(np.uint8) + 2 * PROPOSALS[2].astype(np.uint8)
    assert (instance == expected_instance).all()
