"""The project database's schema, as an append-only list of migrations.

``PRAGMA user_version`` holds how many have been applied; ``wsseg.store.project.Project`` applies the rest
when it opens a project.
"""

# Each entry migrates the schema from version i to i + 1. Append; never edit a released entry.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE images (
        id INTEGER PRIMARY KEY,
        filename TEXT NOT NULL UNIQUE,
        sha256 TEXT NOT NULL,
        width INTEGER NOT NULL CHECK (width > 0),
        height INTEGER NOT NULL CHECK (height > 0),
        split TEXT NOT NULL DEFAULT 'train',
        added_at REAL NOT NULL
    );
    CREATE INDEX images_sha ON images (sha256);
    CREATE TABLE classes (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
    CREATE TABLE tags (
        image_id INTEGER NOT NULL REFERENCES images (id) ON DELETE CASCADE,
        class_id INTEGER NOT NULL REFERENCES classes (id),
        PRIMARY KEY (image_id, class_id)
    );
    CREATE INDEX tags_class ON tags (class_id);
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        stage TEXT NOT NULL,
        config TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed', 'stopped')),
        metrics TEXT NOT NULL DEFAULT '{}',
        artifacts TEXT,
        started_at REAL NOT NULL,
        finished_at REAL
    );
    CREATE TABLE peaks (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        image_id INTEGER NOT NULL REFERENCES images (id) ON DELETE CASCADE,
        class_id INTEGER NOT NULL REFERENCES classes (id),
        y REAL NOT NULL,
        x REAL NOT NULL,
        value REAL NOT NULL,
        prm_path TEXT
    );
    CREATE INDEX peaks_image ON peaks (image_id, run_id);
    CREATE TABLE pseudo_masks (
        id INTEGER PRIMARY KEY,
        run_id INTEGER REFERENCES runs (id) ON DELETE SET NULL,
        image_id INTEGER NOT NULL REFERENCES images (id) ON DELETE CASCADE,
        class_id INTEGER NOT NULL REFERENCES classes (id),
        peak_id INTEGER REFERENCES peaks (id) ON DELETE SET NULL,
        source TEXT NOT NULL CHECK (source IN ('auto', 'user')),
        status TEXT NOT NULL DEFAULT 'proposed'
            CHECK (status IN ('proposed', 'accepted', 'rejected', 'edited')),
        strategy TEXT,
        score REAL,
        rle TEXT NOT NULL,
        lineage TEXT NOT NULL DEFAULT '{}',
        version INTEGER NOT NULL DEFAULT 1,
        updated_at REAL NOT NULL
    );
    CREATE INDEX pseudo_masks_image ON pseudo_masks (image_id);
    CREATE TABLE edits (
        id INTEGER PRIMARY KEY,
        mask_id INTEGER NOT NULL REFERENCES pseudo_masks (id) ON DELETE CASCADE,
        action TEXT NOT NULL,
        before TEXT NOT NULL,
        after TEXT NOT NULL,
        author TEXT NOT NULL DEFAULT '',
        at REAL NOT NULL,
        undone INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX edits_mask ON edits (mask_id);
    CREATE TABLE jobs (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        args TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed', 'stopped')),
        pid INTEGER,
        progress REAL NOT NULL DEFAULT 0,
        message TEXT NOT NULL DEFAULT '',
        metrics TEXT NOT NULL DEFAULT '{}',
        run_id INTEGER REFERENCES runs (id) ON DELETE SET NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    """,
    # 1 -> 2: curation (wsseg.curation.queue): a mask can be flagged as uncertain; an undo or redo names the
    # edit it reverts.
    """
    ALTER TABLE pseudo_masks ADD COLUMN flagged INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE edits ADD COLUMN reverts INTEGER REFERENCES edits (id);
    """,
    # 2 -> 3: instance predictions of a model (Mask R-CNN), one row per instance, tied to the
    # evaluation or prediction run that wrote them.
    """
    CREATE TABLE predictions (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        image_id INTEGER NOT NULL REFERENCES images (id) ON DELETE CASCADE,
        class_id INTEGER NOT NULL REFERENCES classes (id),
        score REAL NOT NULL,
        rle TEXT NOT NULL
    );
    CREATE INDEX predictions_image ON predictions (image_id, run_id);
    """,
    # 3 -> 4: identity in the source an image or class came from (a COCO file's image and category
    # ids, the image's file name there), so exports can give them back.
    """
    ALTER TABLE images ADD COLUMN source_id INTEGER;
    ALTER TABLE images ADD COLUMN source_name TEXT;
    ALTER TABLE classes ADD COLUMN source_id INTEGER;
    """,
    # 4 -> 5: the images a per-image run has committed (stored with their results, in one transaction),
    # so a run whose driver was killed resumes from them (``--resume``) and nothing is stored twice.
    # ``counts``: the image's tally as JSON ({"peaks": 3}; a skipped image: {"skipped": "reason"}).
    """
    CREATE TABLE run_images (
        run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        image_id INTEGER NOT NULL REFERENCES images (id) ON DELETE CASCADE,
        counts TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY (run_id, image_id)
    );
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
