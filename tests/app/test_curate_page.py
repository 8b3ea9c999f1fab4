"""The Curate page, run headless with Streamlit's AppTest on a hand-made project (tests/curation_project.py)."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from tests.curation_project import tiny_project
from wsseg.store.project import Project

ROOT = Path(__file__).resolve().parents[2]


def _app(project: Path) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.session_state["project_root"] = str(project)
    at.run()
    return at.switch_page("pages/curate.py").run()


def _statuses(root: Path) -> dict[int, str]:
    return {m["id"]: m["status"] for m in Project(root).pseudo_masks()}


def test_the_queue_opens_on_the_most_likely_wrong_mask(tmp_path: Path) -> None:
    tiny_project(tmp_path / "p")
    at = _app(tmp_path / "p")
    assert not at.exception
    assert at.title[0].value == "Curate"
    assert "3 automatic masks" in at.caption[0].value
    assert at.get("image")[0].captions[0] == "mask 2 · a · one.png"  # error 0.975: first
    labels = [b.label for b in at.button]
    assert {"Accept", "Reject", "Flag", "Next", "Undo", "Redo", "Use #1"} <= set(labels)
    # The alternatives are described in words: their size here (the lineage holds no score terms).
    words = [c.value for c in at.caption if c.value.startswith("#1 (proposal ")]
    assert words == [f"#1 (proposal 1, score 0.95): 100 px ({100 / (20 * 30):.1%} of the image)"]


def test_accept_is_in_the_database_and_survives_a_reload(tmp_path: Path) -> None:
    root = tmp_path / "p"
    tiny_project(root)
    at = _app(root)
    at.button(key="curate_accept").click().run()
    assert not at.exception
    assert _statuses(root) == {1: "proposed", 2: "accepted", 3: "proposed"}
    assert Project(root).edit_history()[-1]["author"] == "annotator"
    # the next mask of the queue is shown; reject it
    at.button(key="curate_reject").click().run()
    assert _statuses(root) == {1: "proposed", 2: "accepted", 3: "rejected"}
    reloaded = _app(root)  # a new browser session
    assert not reloaded.exception
    assert "1 accepted · 1 proposed · 1 rejected" in reloaded.caption[0].value
    reloaded.selectbox(key="curate_filter").select("all").run()
    reloaded.button(key="curate_undo").click().run()  # undo in the new session: the last decision
    assert _statuses(root) == {1: "proposed", 2: "accepted", 3: "proposed"}
    reloaded.button(key="curate_redo").click().run()
    assert _statuses(root)[3] == "rejected"


def test_swap_flag_audit_log_and_export(tmp_path: Path) -> None:
    root = tmp_path / "p"
    tiny_project(root)
    at = _app(root)
    at.button(key="curate_swap_1").click().run()
    assert not at.exception
    mask = Project(root).pseudo_masks()[1]
    assert mask["status"] == "edited"
    assert at.get("image")[0].captions[0].startswith("mask 2 ")  # it stays on the mask it swapped
    at.button(key="curate_flag").click().run()
    assert Project(root).pseudo_masks()[1]["flagged"] == 1
    log = at.dataframe[-1].value  # the audit log, newest first
    assert list(log["what"]) == ["flag", "swap"] and log["change"].iloc[0] == "flagged"
    at.button(key="curate_export").click().run()
    assert not at.exception
    written = root / "artifacts" / "curated" / "run-2"
    assert (written / "curated_coco.json").is_file()
    assert (written / "voc" / "SegmentationClass" / "one.png").is_file()
    assert len(at.get("download_button")) == 2


def test_canvas_strokes_become_mask_edits() -> None:
    import numpy as np

    from pages.canvas_adapter import canvas_to_stroke, rectangle_stroke
    from pages.curate_draw import overlay
    from wsseg.curation.queue import apply_stroke

    rgba = np.zeros((60, 90, 4), np.uint8)  # a canvas 3x the 20x30 image
    rgba[0:30, 0:45, 3] = 255  # the top-left quarter drawn
    stroke = canvas_to_stroke(rgba, (20, 30))
    assert stroke.shape == (20, 30) and stroke.sum() == 10 * 15 and stroke[:10, :15].all()
    assert canvas_to_stroke(np.zeros((60, 90, 4), np.uint8), (20, 30)) is None
    mask = rectangle_stroke((20, 30), 5, 15, 10, 20)
    assert mask.sum() == 100
    assert apply_stroke(mask, stroke, "erase").sum() == 100 - 5 * 5
    assert apply_stroke(mask, stroke, "paint").sum() == 100 + 150 - 25
    image = np.zeros((20, 30, 3), np.uint8)
    shown = overlay(image, mask, colour=(200, 0, 0), alpha=0.5)
    assert tuple(shown[10, 15]) == (100, 0, 0)  # inside: half the colour
    assert tuple(shown[5, 12]) == (255, 255, 255) and tuple(shown[4, 12]) == (20, 20, 20)  # light, dark lines
    assert tuple(shown[0, 0]) == (0, 0, 0)
    marked = overlay(image, mask, colour=(200, 0, 0), point=(10, 15))
    assert tuple(marked[10, 17]) == (255, 255, 255) and tuple(marked[10, 18]) == (
        0,
        0,
        0,
    )  # white, black edge
    assert tuple(marked[9, 14]) == (0, 0, 0) and tuple(marked[9, 15]) == (255, 255, 255)
