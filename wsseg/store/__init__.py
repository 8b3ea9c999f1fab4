"""The project store: a folder with a SQLite database, its schema, per-image results and the importer."""
