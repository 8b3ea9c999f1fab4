"""The project store: one folder per project, with a SQLite database in WAL mode.

Layout of a project folder::

    project.sqlite   the database (WAL mode; schema version in PRAGMA user_version)
    images/          the imported images, named by their (unique) filename
    artifacts/       per-stage outputs: CRMs and PRMs (.npz), proposals (RLE), masks (PNG)
    checkpoints/     model weights

Every write is atomic. Rows are written in transactions (``BEGIN IMMEDIATE`` ... ``COMMIT``); files are
written to a temporary name and renamed (``wsseg.fileio``). A file is always in place before the row that
points at it commits, so a process killed at any moment leaves no row pointing at a missing or half-written
file. Each call opens its own short-lived connection, so several processes (two browser sessions, a
background training job, the command line) can use one project at the same time.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import threading
import time
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wsseg.errors import BadInputError
from wsseg.fileio import write_bytes
from wsseg.store.results import ResultsStore
from wsseg.store.schema import MIGRATIONS, SCHEMA_VERSION

DB_NAME = "project.sqlite"


_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class ImageRecord:
    """One image of a project. ``width``/``height`` in pixels; ``tags`` sorted class names."""

    id: int
    filename: str
    sha256: str
    width: int
    height: int
    split: str
    tags: tuple[str, ...]
    source_id: int | None = None
    source_name: str | None = None


@dataclass(frozen=True)
class RunRecord:
    """One run of a pipeline stage: its config and metrics as dicts, times as UNIX seconds."""

    id: int
    stage: str
    config: dict[str, Any]
    status: str
    metrics: dict[str, Any]
    artifacts: str | None
    started_at: float
    finished_at: float | None


def safe_filename(name: str) -> str:
    """A filename safe to store: no folders, no control characters, ASCII letters/digits/._- only.

    Unicode letters are transliterated where NFKD allows it; anything else becomes ``_``.
    """
    base = Path(name.replace("\\", "/")).name
    base = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode("ascii")
    stem, dot, suffix = base.rpartition(".")
    if not dot:
        stem, suffix = base, ""
    stem = _SAFE_NAME.sub("_", stem).strip("._") or "image"
    suffix = _SAFE_NAME.sub("", suffix).lower()
    return f"{stem}.{suffix}" if suffix else stem


#: The write transaction open in each thread, per database (``Project.transaction`` nests in it).
_OPEN_TRANSACTIONS = threading.local()


class Project(ResultsStore):
    """A project folder and its database. Cheap to construct; every method opens its own connection."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.db_path = self.root / DB_NAME
        if not self.db_path.exists():
            raise BadInputError(str(self.root), f"not a wsseg project (no {DB_NAME}); create one first")
        self._migrate()

    # ------------------------------------------------------------------ creation and connections
    @classmethod
    def create(cls, root: str | Path, name: str | None = None) -> Project:
        """Create the folder layout and the database (or open it when it already exists)."""
        root = Path(root)
        if root.exists() and not root.is_dir():
            raise BadInputError(str(root), "exists and is not a folder")
        for sub in ("images", "artifacts", "checkpoints"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        first = not (root / DB_NAME).exists()
        with contextlib.closing(sqlite3.connect(root / DB_NAME)) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
        project = cls(root)
        if first:
            with project.transaction() as conn:
                conn.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('name', ?), ('created_at', ?)",
                    (name or root.name, str(time.time())),
                )
        return project

    @staticmethod
    def is_project(root: str | Path) -> bool:
        return (Path(root) / DB_NAME).is_file()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.db_path, timeout=30.0, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: everything inside commits together or not at all.

        A transaction opened inside another one of the same database, in the same thread, is part of
        it: a stage stores an image's results and marks the image committed in one transaction."""
        key = str(self.db_path.resolve())
        outer = _OPEN_TRANSACTIONS.__dict__.get(key)
        if outer is not None:
            yield outer
            return
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            _OPEN_TRANSACTIONS.__dict__[key] = conn
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            finally:
                del _OPEN_TRANSACTIONS.__dict__[key]
            conn.execute("COMMIT")
        finally:
            conn.close()

    @contextlib.contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """A read-only connection (a consistent snapshot for the statements run inside)."""
        conn = self._connect()
        try:
            yield conn
        finally:
            conn.close()

    def _migrate(self) -> None:
        with contextlib.closing(self._connect()) as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise BadInputError(
                    str(self.db_path),
                    f"schema version {version} is newer than this wsseg understands ({SCHEMA_VERSION}); "
                    "upgrade wsseg",
                )
            for target in range(version, SCHEMA_VERSION):
                conn.execute("BEGIN IMMEDIATE")
                try:
                    # Another process may have migrated while we waited for the lock.
                    if conn.execute("PRAGMA user_version").fetchone()[0] != target:
                        conn.execute("ROLLBACK")
                        continue
                    for statement in MIGRATIONS[target].split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {target + 1}")
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise

    @property
    def schema_version(self) -> int:
        with self.reading() as conn:
            return conn.execute("PRAGMA user_version").fetchone()[0]

    @property
    def name(self) -> str:
        with self.reading() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'name'").fetchone()
        return row[0] if row else self.root.name

    def path(self, relative: str) -> Path:
        """Absolute path of a file stored relative to the project folder; refuses escapes."""
        full = (self.root / relative).resolve()
        if not full.is_relative_to(self.root.resolve()):
            raise BadInputError(relative, "path leaves the project folder")
        return full

    def artifacts(self, stage: str, run_id: int) -> Path:
        """The folder of the files of run ``run_id`` of ``stage``: ``artifacts/<stage>/run-<id>`` (not created).

        ``stage`` names the folder: the run's stage (``peaks``, ``proposals``, ``pseudo_masks``,
        ``evaluate``), ``ple`` for the estimator's label maps, ``curated`` for curation exports."""
        return self.root / "artifacts" / stage / f"run-{int(run_id)}"

    def artifact(self, stage: str, run_id: int, image_id: int, suffix: str) -> Path:
        """One image's file of a run: ``artifacts/<stage>/run-<id>/<image id><suffix>`` (suffix such as
        ``.npz``, ``.json``, ``.png``)."""
        return self.artifacts(stage, run_id) / f"{int(image_id)}{suffix}"

    # ------------------------------------------------------------------ classes and images
    def _class_id(self, conn: sqlite3.Connection, name: str) -> int:
        name = name.strip()
        if not name:
            raise BadInputError(repr(name), "a class name must not be empty")
        conn.execute("INSERT OR IGNORE INTO classes (name) VALUES (?)", (name,))
        return conn.execute("SELECT id FROM classes WHERE name = ?", (name,)).fetchone()[0]

    def add_classes(self, names: Iterable[str], source_ids: Mapping[str, int] | None = None) -> None:
        """Declare classes (in order), so an untagged dataset still knows its label set. ``source_ids``:
        a class's id in the source it came from (a COCO category id), kept unless one is stored."""
        with self.transaction() as conn:
            for name in names:
                class_id = self._class_id(conn, name)
                if source_ids and name in source_ids:
                    conn.execute(
                        "UPDATE classes SET source_id = ? WHERE id = ? AND source_id IS NULL",
                        (int(source_ids[name]), class_id),
                    )

    def class_source_ids(self) -> dict[str, int]:
        """Class name -> its id in the source it came from, for the classes that have one."""
        with self.reading() as conn:
            rows = conn.execute("SELECT name, source_id FROM classes WHERE source_id IS NOT NULL")
            return {name: int(source_id) for name, source_id in rows}

    def category_ids(self) -> dict[str, int]:
        """Class name -> the category id files written for the outside use: the source's id where the
        class came with one (a COCO category id), else its position + 1; positions for every class
        when the two would collide."""
        classes, source = self.classes(), self.class_source_ids()
        ids = {name: source.get(name, k + 1) for k, name in enumerate(classes)}
        return ids if len(set(ids.values())) == len(ids) else {name: k + 1 for k, name in enumerate(classes)}

    def classes(self) -> list[str]:
        """Class names in the order they were first declared."""
        with self.reading() as conn:
            return [row[0] for row in conn.execute("SELECT name FROM classes ORDER BY id")]

    def add_image(
        self,
        filename: str,
        data: bytes,
        width: int,
        height: int,
        sha256: str,
        tags: Sequence[str] = (),
        split: str = "train",
        source_id: int | None = None,
        source_name: str | None = None,
    ) -> ImageRecord:
        """Store an encoded image and its tags. The filename is made safe and unique. ``source_id`` and
        ``source_name``: the image's id and file name in the source it came from (a COCO file), if any.

        The caller has already decoded ``data`` (and so knows its size and hash): the store does not
        judge image content. The file lands (atomically) before its row commits.
        """
        stem_name = safe_filename(filename)
        with self.transaction() as conn:
            unique = stem_name
            stem, dot, suffix = stem_name.rpartition(".")
            if not dot:
                stem, suffix = stem_name, ""
            k = 1
            while conn.execute("SELECT 1 FROM images WHERE filename = ?", (unique,)).fetchone() or (
                (self.root / "images" / unique).exists()
            ):
                unique = f"{stem}_{k}.{suffix}" if suffix else f"{stem}_{k}"
                k += 1
            target = self.root / "images" / unique
            write_bytes(target, data)
            try:
                cur = conn.execute(
                    "INSERT INTO images (filename, sha256, width, height, split, added_at, source_id, "
                    "source_name) VALUES (?,?,?,?,?,?,?,?)",
                    (unique, sha256, width, height, split, time.time(), source_id, source_name),
                )
                image_id = cur.lastrowid
                for tag in sorted(set(tags)):
                    conn.execute(
                        "INSERT INTO tags (image_id, class_id) VALUES (?, ?)",
                        (image_id, self._class_id(conn, tag)),
                    )
            except BaseException:
                target.unlink(missing_ok=True)
                raise
        return ImageRecord(
            image_id, unique, sha256, width, height, split, tuple(sorted(set(tags))), source_id, source_name
        )

    def find_by_hash(self, sha256: str) -> ImageRecord | None:
        with self.reading() as conn:
            row = conn.execute("SELECT id FROM images WHERE sha256 = ?", (sha256,)).fetchone()
        return self.image(row[0]) if row else None

    def _records(self, conn: sqlite3.Connection, rows: Iterable[sqlite3.Row]) -> list[ImageRecord]:
        rows = list(rows)
        if not rows:
            return []
        ids = [row["id"] for row in rows]
        tags: dict[int, list[str]] = {i: [] for i in ids}
        marks = ",".join("?" * len(ids))
        for image_id, name in conn.execute(
            f"SELECT t.image_id, c.name FROM tags t JOIN classes c ON c.id = t.class_id "
            f"WHERE t.image_id IN ({marks})",
            ids,
        ):
            tags[image_id].append(name)
        return [
            ImageRecord(
                row["id"],
                row["filename"],
                row["sha256"],
                row["width"],
                row["height"],
                row["split"],
                tuple(sorted(tags[row["id"]])),
                row["source_id"],
                row["source_name"],
            )
            for row in rows
        ]

    def image(self, image_id: int) -> ImageRecord:
        with self.reading() as conn:
            rows = conn.execute("SELECT * FROM images WHERE id = ?", (image_id,)).fetchall()
            records = self._records(conn, rows)
        if not records:
            raise BadInputError(f"image {image_id}", "no such image in this project")
        return records[0]

    def images(
        self,
        tag: str | None = None,
        split: str | None = None,
        offset: int = 0,
        limit: int | None = None,
        untagged: bool = False,
    ) -> list[ImageRecord]:
        """Images in import order, optionally only those carrying ``tag`` (or no tag at all, with
        ``untagged``) or of one ``split``; paged."""
        where, args = self._filter(tag, split, untagged)
        sql = f"SELECT * FROM images i {where} ORDER BY i.id LIMIT ? OFFSET ?"
        with self.reading() as conn:
            rows = conn.execute(sql, [*args, -1 if limit is None else limit, offset]).fetchall()
            return self._records(conn, rows)

    def count_images(self, tag: str | None = None, split: str | None = None, untagged: bool = False) -> int:
        where, args = self._filter(tag, split, untagged)
        with self.reading() as conn:
            return conn.execute(f"SELECT COUNT(*) FROM images i {where}", args).fetchone()[0]

    @staticmethod
    def _filter(tag: str | None, split: str | None, untagged: bool = False) -> tuple[str, list[Any]]:
        clauses, args = [], []
        if untagged:
            clauses.append("i.id NOT IN (SELECT image_id FROM tags)")
        if tag is not None:
            clauses.append(
                "i.id IN (SELECT t.image_id FROM tags t JOIN classes c ON c.id = t.class_id WHERE c.name = ?)"
            )
            args.append(tag)
        if split is not None:
            clauses.append("i.split = ?")
            args.append(split)
        return ("WHERE " + " AND ".join(clauses) if clauses else ""), args

    def split_counts(self) -> dict[str, int]:
        """Split name -> number of images, in name order."""
        with self.reading() as conn:
            rows = conn.execute("SELECT split, COUNT(*) FROM images GROUP BY split ORDER BY split")
            return {split: int(n) for split, n in rows}

    def image_path(self, record: ImageRecord) -> Path:
        return self.root / "images" / record.filename

    def set_tags(self, image_id: int, tags: Sequence[str]) -> None:
        """Replace an image's tags in one transaction."""
        with self.transaction() as conn:
            if not conn.execute("SELECT 1 FROM images WHERE id = ?", (image_id,)).fetchone():
                raise BadInputError(f"image {image_id}", "no such image in this project")
            conn.execute("DELETE FROM tags WHERE image_id = ?", (image_id,))
            for tag in sorted(set(tags)):
                conn.execute(
                    "INSERT INTO tags (image_id, class_id) VALUES (?, ?)",
                    (image_id, self._class_id(conn, tag)),
                )

    def tag_counts(self) -> dict[str, int]:
        """Number of images carrying each class (0 for declared classes no image carries)."""
        with self.reading() as conn:
            rows = conn.execute(
                "SELECT c.name, COUNT(t.image_id) FROM classes c LEFT JOIN tags t ON t.class_id = c.id "
                "GROUP BY c.id ORDER BY c.id"
            ).fetchall()
        return {name: n for name, n in rows}

    # ------------------------------------------------------------------ runs
    def start_run(self, stage: str, config: dict[str, Any], artifacts: str | None = None) -> int:
        with self.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO runs (stage, config, status, artifacts, started_at) VALUES (?, ?, 'running', ?, ?)",
                (stage, json.dumps(config, sort_keys=True, default=str), artifacts, time.time()),
            )
            return int(cur.lastrowid)

    def finish_run(self, run_id: int, status: str = "done", metrics: dict[str, Any] | None = None) -> None:
        with self.transaction() as conn:
            conn.execute(
                "UPDATE runs SET status = ?, metrics = ?, finished_at = ? WHERE id = ?",
                (status, json.dumps(metrics or {}, sort_keys=True, default=str), time.time(), run_id),
            )

    def reopen_run(self, run_id: int) -> None:
        """Mark a run ``running`` again (a resumed or joined run), its metrics kept until it finishes."""
        with self.transaction() as conn:
            conn.execute("UPDATE runs SET status = 'running', finished_at = NULL WHERE id = ?", (run_id,))

    def commit_image(self, run_id: int, image_id: int, counts: Mapping[str, Any]) -> None:
        """Record that run ``run_id`` has stored image ``image_id`` (its tally ``counts``). Called inside
        the transaction that stores the image's results, it commits with them."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO run_images (run_id, image_id, counts) VALUES (?, ?, ?)",
                (run_id, image_id, json.dumps(dict(counts), sort_keys=True, default=str)),
            )

    def committed_images(self, run_id: int) -> dict[int, dict[str, Any]]:
        """The images run ``run_id`` has committed, id -> tally (see ``commit_image``)."""
        with self.reading() as conn:
            rows = conn.execute(
                "SELECT image_id, counts FROM run_images WHERE run_id = ?", (run_id,)
            ).fetchall()
        return {int(r["image_id"]): json.loads(r["counts"]) for r in rows}

    def runs(self, stage: str | None = None) -> list[RunRecord]:
        """Runs, newest first."""
        sql = "SELECT * FROM runs" + (" WHERE stage = ?" if stage else "") + " ORDER BY id DESC"
        with self.reading() as conn:
            rows = conn.execute(sql, (stage,) if stage else ()).fetchall()
        return [
            RunRecord(
                r["id"],
                r["stage"],
                json.loads(r["config"]),
                r["status"],
                json.loads(r["metrics"]),
                r["artifacts"],
                r["started_at"],
                r["finished_at"],
            )
            for r in rows
        ]

    def latest_run(self, stage: str, status: str = "done") -> RunRecord | None:
        return next((run for run in self.runs(stage) if run.status == status), None)

    # ------------------------------------------------------------------ consistency
    def check(self) -> list[str]:
        """Problems found in the store (empty when consistent): SQLite's integrity check, foreign keys,
        and image rows whose file is missing."""
        problems = []
        with self.reading() as conn:
            result = conn.execute("PRAGMA integrity_check").fetchone()[0]
            if result != "ok":
                problems.append(f"integrity_check: {result}")
            for row in conn.execute("PRAGMA foreign_key_check"):
                problems.append(f"foreign key: {tuple(row)}")
            for (filename,) in conn.execute("SELECT filename FROM images"):
                if not (self.root / "images" / filename).is_file():
                    problems.append(f"missing image file: {filename}")
        return problems
