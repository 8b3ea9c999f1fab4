"""Files uploaded in the browser, imported through the same importer as ``wsseg import``.

The upload is a list of (file name, bytes): images, at most one tags CSV (``filename,tags``), and
zips of any layout ``wsseg import`` reads (a tagged folder, COCO, VOC, a folder per class). Loose
images and the CSV are written to a temporary tagged folder and imported; each zip is imported as it
is, and one without a known layout is refused by name. Without a CSV the loose images come in untagged, to be
tagged in the browser. Every bad file is reported by name (an ``ImportReport`` problem) and skipped.
"""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Sequence
from pathlib import Path, PurePath

from wsseg.data.tagged_folder import CSV_NAME, IMAGES_DIR, Problem
from wsseg.errors import BadInputError
from wsseg.store.importer import ImportReport, import_source
from wsseg.store.project import Project


def import_uploads(
    project: Project, files: Sequence[tuple[str, bytes]], split: str | None = None
) -> ImportReport:
    """Import uploaded ``files`` into ``project``; one report for all of them (see the module docstring).
    ``split``: every image's split; None keeps a zipped source's own splits (COCO, VOC, split folders)
    and puts the rest in ``train``."""
    report = ImportReport()
    loose: dict[str, bytes] = {}
    tags_csv: tuple[str, bytes] | None = None
    with tempfile.TemporaryDirectory(prefix="wsseg-upload-") as tmp:
        folder = Path(tmp)
        for k, (name, data) in enumerate(files):
            base = PurePath(name.replace("\\", "/")).name
            suffix = Path(base).suffix.lower()
            if suffix == ".zip":
                path = folder / f"upload-{k}.zip"
                path.write_bytes(data)
                try:
                    _merge(report, import_source(project, path, split=split), (str(path), base))
                except BadInputError as error:  # no layout found in it: that zip is refused, not the rest
                    report.problems.append(Problem(base, error.problem))
            elif suffix == ".csv":
                if tags_csv is not None:
                    report.problems.append(
                        Problem(base, f"a second CSV (using {tags_csv[0]} for the tags); skipped")
                    )
                else:
                    tags_csv = (base, data)
            elif base in loose:
                report.problems.append(Problem(f"{IMAGES_DIR}/{base}", "uploaded twice; kept the first"))
            elif base:
                loose[base] = data
        if tags_csv is not None and not loose:
            report.problems.append(
                Problem(tags_csv[0], "no images uploaded beside it (upload the images with their tags CSV)")
            )
        if loose:
            images = folder / "folder" / IMAGES_DIR
            images.mkdir(parents=True)
            for base, data in loose.items():
                (images / base).write_bytes(data)
            csv_data = tags_csv[1] if tags_csv is not None else _untagged_csv(sorted(loose))
            (images.parent / CSV_NAME).write_bytes(csv_data)
            _merge(report, import_source(project, images.parent, split=split or "train"))
    return report


def _untagged_csv(names: list[str]) -> bytes:
    """A tags CSV listing ``names`` with no tags."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["filename", "tags"])
    writer.writerows([name, ""] for name in names)
    return out.getvalue().encode()


def _merge(into: ImportReport, part: ImportReport, zip_names: tuple[str, str] | None = None) -> None:
    """Add ``part`` to ``into``; ``zip_names`` (temporary path, uploaded name): problems of a zip
    name the uploaded zip."""
    into.imported.extend(part.imported)
    into.skipped_duplicates.extend(part.skipped_duplicates)
    into.notes.extend(part.notes)
    for problem in part.problems:
        source = problem.source
        if zip_names is not None:
            temporary, uploaded = zip_names
            source = source.replace(temporary, uploaded)
            source = source if source.startswith(uploaded) else f"{uploaded}: {source}"
        into.problems.append(Problem(source, problem.message))
