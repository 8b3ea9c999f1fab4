"""The project store's per-image results: peaks, model predictions, pseudo masks and their edit history.

``ResultsStore`` is a part of ``wsseg.store.project.Project`` (its base class), kept apart because these tables
are written by the stages and the curation tools while ``Project`` itself owns the database, its
connections, the images, their tags and the runs. Every method runs in ``Project``'s short
transactions (``transaction``/``reading``) and names classes through ``Project._class_id``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from wsseg.errors import BadInputError

#: The statuses of a pseudo mask a person has approved: as proposed, or after painting it.
CURATED: tuple[str, ...] = ("accepted", "edited")


@dataclass(frozen=True)
class PeakRecord:
    """A stored peak: (y, x) in input-image pixels; ``prm_path`` relative to the project folder."""

    id: int
    run_id: int
    image_id: int
    class_name: str
    y: float
    x: float
    value: float
    prm_path: str | None


class ResultsStore:
    """Peaks, predictions, pseudo masks and edits of a ``wsseg.store.project.Project`` (not used on its own: the
    methods use ``Project.transaction``, ``Project.reading`` and ``Project._class_id``)."""

    # ------------------------------------------------------------------ peaks
    def add_peaks(self, run_id: int, image_id: int, peaks: Iterable[dict[str, Any]]) -> list[int]:
        """Store the peaks of one image for one run, replacing that run's earlier peaks of the image.

        Each peak is a dict with ``class_name``, ``y``, ``x``, ``value`` and optionally ``prm_path``.
        """
        ids = []
        with self.transaction() as conn:
            conn.execute("DELETE FROM peaks WHERE run_id = ? AND image_id = ?", (run_id, image_id))
            for peak in peaks:
                cur = conn.execute(
                    "INSERT INTO peaks (run_id, image_id, class_id, y, x, value, prm_path) VALUES (?,?,?,?,?,?,?)",
                    (
                        run_id,
                        image_id,
                        self._class_id(conn, peak["class_name"]),
                        float(peak["y"]),
                        float(peak["x"]),
                        float(peak["value"]),
                        peak.get("prm_path"),
                    ),
                )
                ids.append(int(cur.lastrowid))
        return ids

    def peaks(self, image_id: int, run_id: int | None = None) -> list[PeakRecord]:
        """Peaks of an image, from ``run_id`` or from the newest peaks run that has any for it."""
        with self.reading() as conn:
            if run_id is None:
                row = conn.execute("SELECT MAX(run_id) FROM peaks WHERE image_id = ?", (image_id,)).fetchone()
                run_id = row[0]
                if run_id is None:
                    return []
            rows = conn.execute(
                "SELECT p.*, c.name AS class_name FROM peaks p JOIN classes c ON c.id = p.class_id "
                "WHERE p.image_id = ? AND p.run_id = ? ORDER BY p.id",
                (image_id, run_id),
            ).fetchall()
        return [
            PeakRecord(
                r["id"],
                r["run_id"],
                r["image_id"],
                r["class_name"],
                r["y"],
                r["x"],
                r["value"],
                r["prm_path"],
            )
            for r in rows
        ]

    # ------------------------------------------------------------------ model predictions
    def add_predictions(self, run_id: int, image_id: int, instances: Iterable[dict[str, Any]]) -> None:
        """Store one image's predicted instances for a run, replacing that run's earlier ones of the image.

        Each instance is a dict with ``class_name``, ``score`` and ``rle`` (COCO RLE, str ``counts``)."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM predictions WHERE run_id = ? AND image_id = ?", (run_id, image_id))
            conn.executemany(
                "INSERT INTO predictions (run_id, image_id, class_id, score, rle) VALUES (?,?,?,?,?)",
                [
                    (
                        run_id,
                        image_id,
                        self._class_id(conn, i["class_name"]),
                        float(i["score"]),
                        json.dumps(i["rle"]),
                    )
                    for i in instances
                ],
            )

    def predictions(self, run_id: int, image_id: int | None = None) -> list[dict[str, Any]]:
        """A run's predicted instances (of one image, or all), best score first per image; ``rle`` decoded."""
        sql = (
            "SELECT p.image_id, c.name AS class_name, p.score, p.rle FROM predictions p "
            "JOIN classes c ON c.id = p.class_id WHERE p.run_id = ?"
            + (" AND p.image_id = ?" if image_id is not None else "")
            + " ORDER BY p.image_id, p.score DESC, p.id"
        )
        with self.reading() as conn:
            rows = conn.execute(sql, (run_id,) if image_id is None else (run_id, image_id)).fetchall()
        return [{**dict(r), "rle": json.loads(r["rle"])} for r in rows]

    # ------------------------------------------------------------------ pseudo masks and their history
    def add_pseudo_mask(
        self,
        image_id: int,
        class_name: str,
        rle: dict[str, Any],
        source: str = "auto",
        run_id: int | None = None,
        peak_id: int | None = None,
        strategy: str | None = None,
        score: float | None = None,
        lineage: dict[str, Any] | None = None,
    ) -> int:
        """Store one pseudo mask (COCO RLE dict with ``size`` and str ``counts``), status 'proposed'."""
        with self.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO pseudo_masks (run_id, image_id, class_id, peak_id, source, strategy, score, rle, "
                "lineage, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    run_id,
                    image_id,
                    self._class_id(conn, class_name),
                    peak_id,
                    source,
                    strategy,
                    score,
                    json.dumps(rle),
                    json.dumps(lineage or {}, default=str),
                    time.time(),
                ),
            )
            return int(cur.lastrowid)

    def add_pseudo_masks(self, run_id: int, image_id: int, masks: Iterable[dict[str, Any]]) -> list[int]:
        """Store the automatic pseudo masks of one image for one run in one transaction, replacing that
        run's earlier masks of the image. Each dict has ``class_name`` and ``rle``, optionally
        ``peak_id``, ``strategy``, ``score``, ``lineage`` (as ``add_pseudo_mask``)."""
        ids = []
        with self.transaction() as conn:
            conn.execute("DELETE FROM pseudo_masks WHERE run_id = ? AND image_id = ?", (run_id, image_id))
            for m in masks:
                cur = conn.execute(
                    "INSERT INTO pseudo_masks (run_id, image_id, class_id, peak_id, source, strategy, score, "
                    "rle, lineage, updated_at) VALUES (?,?,?,?,'auto',?,?,?,?,?)",
                    (
                        run_id,
                        image_id,
                        self._class_id(conn, m["class_name"]),
                        m.get("peak_id"),
                        m.get("strategy"),
                        m.get("score"),
                        json.dumps(m["rle"]),
                        json.dumps(m.get("lineage") or {}, default=str),
                        time.time(),
                    ),
                )
                ids.append(int(cur.lastrowid))
        return ids

    def pseudo_masks(self, image_id: int | None = None, run_id: int | None = None) -> list[dict[str, Any]]:
        """Pseudo masks (of one image or all; of one run or all) as dicts; ``rle`` and ``lineage`` decoded."""
        where = [w for w, v in (("m.image_id = ?", image_id), ("m.run_id = ?", run_id)) if v is not None]
        sql = (
            "SELECT m.*, c.name AS class_name FROM pseudo_masks m JOIN classes c ON c.id = m.class_id"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY m.id"
        )
        with self.reading() as conn:
            rows = conn.execute(sql, [v for v in (image_id, run_id) if v is not None]).fetchall()
        out = []
        for r in rows:
            item = dict(r)
            item["rle"] = json.loads(item["rle"])
            item["lineage"] = json.loads(item["lineage"])
            out.append(item)
        return out

    def edit_mask(
        self,
        mask_id: int,
        expected_version: int,
        action: str,
        status: str | None = None,
        rle: dict[str, Any] | None = None,
        author: str = "",
        flagged: bool | None = None,
        reverts: int | None = None,
    ) -> int:
        """Change a pseudo mask's status, shape and/or uncertainty flag, recording before/after (each a
        dict with ``status``, ``rle``, ``flagged``) in the edit history.

        ``expected_version`` is the version the editor saw: if someone else changed the mask since, the
        edit is refused (a conflict is reported, never silently overwritten). ``reverts``: the id of the
        edit this one undoes or redoes (``wsseg.curation.queue``), marked ``undone`` in the same transaction.
        Returns the new version.
        """
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT status, rle, version, flagged FROM pseudo_masks WHERE id = ?", (mask_id,)
            ).fetchone()
            if row is None:
                raise BadInputError(f"mask {mask_id}", "no such pseudo mask")
            if row["version"] != expected_version:
                raise BadInputError(
                    f"mask {mask_id}",
                    f"was changed by someone else (version {row['version']}, you edited version "
                    f"{expected_version}); reload it and edit again",
                )
            before = {"status": row["status"], "rle": json.loads(row["rle"]), "flagged": bool(row["flagged"])}
            after = {
                "status": status or before["status"],
                "rle": rle if rle is not None else before["rle"],
                "flagged": before["flagged"] if flagged is None else bool(flagged),
            }
            conn.execute(
                "UPDATE pseudo_masks SET status = ?, rle = ?, flagged = ?, version = version + 1, updated_at = ? "
                "WHERE id = ?",
                (after["status"], json.dumps(after["rle"]), int(after["flagged"]), time.time(), mask_id),
            )
            conn.execute(
                "INSERT INTO edits (mask_id, action, before, after, author, at, reverts) VALUES (?,?,?,?,?,?,?)",
                (mask_id, action, json.dumps(before), json.dumps(after), author, time.time(), reverts),
            )
            if reverts is not None:
                conn.execute("UPDATE edits SET undone = 1 WHERE id = ?", (reverts,))
            return row["version"] + 1

    def edit_history(self, mask_id: int | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM edits" + (" WHERE mask_id = ?" if mask_id is not None else "") + " ORDER BY id"
        with self.reading() as conn:
            rows = conn.execute(sql, () if mask_id is None else (mask_id,)).fetchall()
        return [{**dict(r), "before": json.loads(r["before"]), "after": json.loads(r["after"])} for r in rows]
