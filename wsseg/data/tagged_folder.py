"""The user's own format: a folder (or a zip of one) holding ``images/`` and ``tags.csv``.

``tags.csv`` has the header ``filename,tags``; ``filename`` is relative to ``images/`` and ``tags``
lists the image's tags separated by ``;`` (an empty cell marks an image with no tag, a negative)::

    filename,tags
    cat_and_dog.jpg,cat;dog
    empty_street.png,

Reading never stops at the first bad file: each bad file or row becomes one :class:`Problem`
naming it, and every good image still comes through. Zips are read in memory, never extracted.
"""

from __future__ import annotations

import csv
import io
import os
import stat
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from wsseg.data.images import DEFAULT_MAX_PIXELS, is_image_name, read_image
from wsseg.errors import BadInputError
from wsseg.fileio import write_bytes

CSV_NAME = "tags.csv"
IMAGES_DIR = "images"
TAG_SEPARATOR = ";"


@dataclass(frozen=True)
class Problem:
    """One bad file or row, reported to the user and skipped.

    ``source`` names the file (``images/x.png``, ``tags.csv``, the folder or zip); ``message`` says
    what is wrong and, where it helps, what was expected.
    """

    source: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.message}"


@dataclass(frozen=True)
class TaggedImage:
    """A readable image with its tags.

    ``filename`` is the posix path relative to ``images/``; ``tags`` are unique and sorted (empty
    for a negative image). Exactly one of ``path`` (a file on disk) and ``data`` (its bytes, for
    zips) is set. ``width``/``height`` are in pixels.
    """

    filename: str
    tags: tuple[str, ...]
    width: int
    height: int
    path: Path | None = None
    data: bytes | None = None

    def read_bytes(self) -> bytes:
        """The file's bytes."""
        return self.data if self.data is not None else Path(self.path).read_bytes()

    def load(self, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
        """The image as HxWx3 uint8 RGB."""
        return read_image(self.read_bytes(), f"{IMAGES_DIR}/{self.filename}", max_pixels)


@dataclass(frozen=True)
class TaggedFolder:
    """What was read: the good images (in ``tags.csv`` order) and one Problem per bad file or row."""

    items: list[TaggedImage] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def classes(self) -> tuple[str, ...]:
        """Sorted tag names used by at least one image."""
        return tuple(sorted({tag for item in self.items for tag in item.tags}))


@dataclass(frozen=True)
class ZipLimits:
    """Limits that keep a hostile or broken zip from exhausting memory.

    max_members: entries in the zip (default 100,000).
    max_total_bytes: sum of uncompressed sizes (default 2 GiB); over it the zip is refused.
    max_member_bytes: uncompressed size of one entry (default 256 MiB); over it the entry is skipped.
    max_ratio: uncompressed / compressed size of one entry above 1 MiB (default 100; images barely
        compress, a zip bomb compresses by thousands).
    """

    max_members: int = 100_000
    max_total_bytes: int = 2 << 30
    max_member_bytes: int = 256 << 20
    max_ratio: float = 100.0


# --------------------------------------------------------------------------- reading


def read_tagged_folder(root: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> TaggedFolder:
    """Read ``root/images/`` and ``root/tags.csv``; see the module docstring for the format.

    Raises BadInputError only when ``root`` is not a folder; everything else is a Problem.
    """
    root = Path(root)
    if not root.is_dir():
        raise BadInputError(str(root), "not a folder (expected a folder holding images/ and tags.csv)")
    problems: list[Problem] = []
    images_dir = root / IMAGES_DIR
    files: dict[str, Callable[[], bytes]] = {}
    paths: dict[str, Path] = {}
    if images_dir.is_dir():
        for path in sorted(images_dir.rglob("*")):
            rel = path.relative_to(images_dir).as_posix()
            if path.is_file() and not _hidden(rel):
                files[rel] = path.read_bytes
                paths[rel] = path
    csv_path = root / CSV_NAME
    csv_data = csv_path.read_bytes() if csv_path.is_file() else None
    items = _assemble(str(root), csv_data, files, problems, max_pixels)
    items = [TaggedImage(i.filename, i.tags, i.width, i.height, path=paths[i.filename]) for i in items]
    return TaggedFolder(items, problems)


def read_tagged_zip(
    source: str | os.PathLike | bytes,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    limits: ZipLimits = ZipLimits(),  # noqa: B008 (frozen, immutable)
) -> TaggedFolder:
    """Read a zip of a tagged folder (at the zip root or inside one top-level folder), in memory.

    Entries with ``..`` or absolute paths, symlinks, encrypted entries and entries that are too large
    or compress suspiciously well are skipped with a Problem; a zip whose total uncompressed size is
    over the limit is refused with one Problem. Raises BadInputError if ``source`` is not a zip.
    """
    label = "<zip>" if isinstance(source, bytes | bytearray) else str(source)
    stream = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
    with _open_zip(stream, label) as archive:
        return _read_zip(archive, label, max_pixels, limits)


def _read_zip(archive: zipfile.ZipFile, label: str, max_pixels: int, limits: ZipLimits) -> TaggedFolder:
    problems: list[Problem] = []
    infos = archive.infolist()
    too_large = _over_limits(infos, limits)
    if too_large:
        return TaggedFolder([], [Problem(label, too_large)])

    safe: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        name = info.filename
        if info.is_dir():
            continue
        reason = _unsafe_reason(info, limits)
        if reason:
            problems.append(Problem(name, f"{reason}; skipped"))
        elif not _hidden(name):
            safe[name] = info

    prefix = _zip_prefix(safe)
    if prefix is None:
        msg = f"no {CSV_NAME} found at the zip root or inside one top-level folder; nothing imported"
        return TaggedFolder([], problems + [Problem(label, msg)])
    images_prefix = f"{prefix}{IMAGES_DIR}/"

    def reader(info: zipfile.ZipInfo) -> Callable[[], bytes]:
        return lambda: _read_member(archive, info, limits)

    files = {
        name[len(images_prefix) :]: reader(info)
        for name, info in sorted(safe.items())
        if name.startswith(images_prefix)
    }
    try:
        csv_data = _read_member(archive, safe[prefix + CSV_NAME], limits)
    except BadInputError as exc:
        return TaggedFolder([], problems + [Problem(prefix + CSV_NAME, exc.problem)])
    loaded: dict[str, bytes] = {}

    def keep(rel: str, read: Callable[[], bytes]) -> Callable[[], bytes]:
        def load() -> bytes:
            loaded[rel] = read()
            return loaded[rel]

        return load

    files = {rel: keep(rel, read) for rel, read in files.items()}
    items = _assemble(f"{label}:{prefix or '/'}", csv_data, files, problems, max_pixels)
    items = [TaggedImage(i.filename, i.tags, i.width, i.height, data=loaded[i.filename]) for i in items]
    return TaggedFolder(items, problems)


def _open_zip(source: str | os.PathLike | io.BytesIO, label: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as exc:
        raise BadInputError(label, f"not a readable zip file ({exc})") from None


def _over_limits(infos: list[zipfile.ZipInfo], limits: ZipLimits) -> str | None:
    """Why a whole zip is refused (too many entries, too large expanded), or None."""
    if len(infos) > limits.max_members:
        return f"{len(infos):,} entries is over the limit of {limits.max_members:,}; nothing imported"
    total = sum(info.file_size for info in infos)
    if total > limits.max_total_bytes:
        return (
            f"expands to {total:,} bytes, over the limit of {limits.max_total_bytes:,}; "
            "nothing imported (split it into smaller zips)"
        )
    return None


def _unsafe_reason(info: zipfile.ZipInfo, limits: ZipLimits) -> str | None:
    name = info.filename
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts:
        return "path leaves the zip folder (absolute or with '..')"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "symbolic link, not a file"
    if info.flag_bits & 0x1:
        return "encrypted entry"
    if info.file_size > limits.max_member_bytes:
        return f"{info.file_size:,} bytes uncompressed is over the limit of {limits.max_member_bytes:,}"
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size > (1 << 20) and ratio > limits.max_ratio:
        return f"compression ratio {ratio:,.0f}:1 is over the limit of {limits.max_ratio:,.0f}:1 (zip bomb?)"
    return None


def _zip_prefix(names: Iterable[str]) -> str | None:
    """'' when tags.csv is at the zip root, 'top/' when inside one top-level folder, else None."""
    names = set(names)
    if CSV_NAME in names:
        return ""
    tops = {n.split("/", 1)[0] for n in names if "/" in n}
    candidates = [f"{top}/" for top in sorted(tops) if f"{top}/{CSV_NAME}" in names]
    return candidates[0] if len(candidates) == 1 else None


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limits: ZipLimits) -> bytes:
    try:
        with archive.open(info) as member:
            data = member.read(limits.max_member_bytes + 1)
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, ValueError) as exc:
        raise BadInputError(info.filename, f"cannot be read from the zip ({exc})") from None
    if len(data) > limits.max_member_bytes:
        raise BadInputError(info.filename, "larger than its header says; skipped")
    return data


def _hidden(rel: str) -> bool:
    """Files that tools add to folders and zips (.DS_Store, __MACOSX/, Thumbs.db): skipped silently."""
    parts = rel.split("/")
    return any(p.startswith(".") or p == "__MACOSX" for p in parts) or parts[-1] == "Thumbs.db"


# --------------------------------------------------------------------------- shared logic


def _assemble(
    where: str,
    csv_data: bytes | None,
    files: dict[str, Callable[[], bytes]],
    problems: list[Problem],
    max_pixels: int,
) -> list[TaggedImage]:
    """Match CSV rows to image files, decode each listed image once, and report every mismatch."""
    if not files:
        problems.append(
            Problem(where, f"no images found in {IMAGES_DIR}/ (expected {IMAGES_DIR}/ and {CSV_NAME})")
        )
        return []
    if csv_data is None:
        problems.append(Problem(CSV_NAME, f"not found in {where} (expected a CSV with header filename,tags)"))
        return []
    rows = _parse_csv(csv_data, problems)
    if rows is None:
        return []

    lower = {name.lower(): name for name in files}
    items: list[TaggedImage] = []
    listed: set[str] = set()
    mentioned: set[str] = set()
    first_line: dict[str, int] = {}
    for line, filename, tags in rows:
        mentioned.add(filename)
        if tags is None:  # a malformed row, already reported
            continue
        if filename in first_line:
            msg = f"line {line}: {filename} is listed again (first on line {first_line[filename]}); kept the first"
            problems.append(Problem(CSV_NAME, msg))
            continue
        first_line[filename] = line
        if filename not in files:
            hint = ""
            if filename.lower() in lower:
                hint = f" (did you mean {lower[filename.lower()]}?)"
                mentioned.add(lower[filename.lower()])
            msg = f"line {line}: {IMAGES_DIR}/{filename} does not exist{hint}; row skipped"
            problems.append(Problem(CSV_NAME, msg))
            continue
        listed.add(filename)
        source = f"{IMAGES_DIR}/{filename}"
        if not is_image_name(filename):
            problems.append(Problem(source, "not an image file name (expected .png, .jpg, ...); skipped"))
            continue
        try:
            array = read_image(files[filename](), source, max_pixels)
        except BadInputError as exc:
            problems.append(Problem(source, f"{exc.problem}; skipped"))
            continue
        except OSError as exc:
            problems.append(Problem(source, f"cannot be read ({exc.strerror or exc}); skipped"))
            continue
        items.append(TaggedImage(filename, tags, width=array.shape[1], height=array.shape[0]))

    for name in files:
        if name not in listed and name not in mentioned:
            problems.append(Problem(f"{IMAGES_DIR}/{name}", f"not listed in {CSV_NAME}; skipped"))
    return items


def _parse_csv(data: bytes, problems: list[Problem]) -> list[tuple[int, str, tuple[str, ...] | None]] | None:
    """Rows as (line number, filename, sorted unique tags or None for a reported bad row).

    None when the whole CSV is refused.
    """
    text = _decode(data, problems)
    if text is None:
        return None
    if "\x00" in text:
        problems.append(Problem(CSV_NAME, "contains NUL bytes, so it is not a text CSV; nothing imported"))
        return None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            problems.append(
                Problem(CSV_NAME, "is empty (expected the header filename,tags); nothing imported")
            )
            return None
        columns = [c.strip().lower() for c in header]
        found = ", ".join(repr(c) for c in header) or "nothing"
        if "filename" not in columns or "tags" not in columns:
            msg = f"expected the columns 'filename' and 'tags' in its header, found {found}; nothing imported"
            problems.append(Problem(CSV_NAME, msg))
            return None
        extra = [h for h, c in zip(header, columns, strict=True) if c not in ("filename", "tags")]
        if extra:
            msg = f"unknown column(s) {', '.join(repr(e) for e in extra)} ignored (expected filename,tags)"
            problems.append(Problem(CSV_NAME, msg))
        i_name, i_tags = columns.index("filename"), columns.index("tags")
        rows = []
        for record in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in record):
                continue
            if len(record) != len(header):
                msg = (
                    f"line {line}: {len(record)} cells where the header has {len(header)} "
                    f"(separate tags with '{TAG_SEPARATOR}', not ','); row skipped"
                )
                problems.append(Problem(CSV_NAME, msg))
                if len(record) > i_name and record[i_name].strip():
                    rows.append((line, record[i_name].strip().replace("\\", "/"), None))
                continue
            filename = record[i_name].strip().replace("\\", "/")
            if not filename:
                problems.append(Problem(CSV_NAME, f"line {line}: empty filename; row skipped"))
                continue
            tags = tuple(sorted({t.strip() for t in record[i_tags].split(TAG_SEPARATOR) if t.strip()}))
            rows.append((line, filename, tags))
    except csv.Error as exc:
        problems.append(Problem(CSV_NAME, f"line {reader.line_num}: not valid CSV ({exc}); nothing imported"))
        return None
    return rows


def _decode(data: bytes, problems: list[Problem]) -> str | None:
    """UTF-8 (with or without BOM), UTF-16 with a BOM, else Windows-1252 with a Problem saying so."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            pass
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        bad = data[exc.start : exc.start + 1].hex()
        try:
            text = data.decode("cp1252")
        except UnicodeDecodeError:
            msg = f"is not UTF-8 text (byte 0x{bad} on line {line}); save it as UTF-8 CSV; nothing imported"
            problems.append(Problem(CSV_NAME, msg))
            return None
        msg = (
            f"is not UTF-8 text (byte 0x{bad} on line {line}); read it as Windows-1252 instead: "
            "check accented names and save it as UTF-8 CSV"
        )
        problems.append(Problem(CSV_NAME, msg))
        return text


# --------------------------------------------------------------------------- writing


def write_tagged_folder(
    root: str | os.PathLike,
    items: Iterable[tuple[str, np.ndarray, Sequence[str]]],
) -> Path:
    """Write (filename, HxWx3 or HxW uint8 image, tags) triples as ``root/images/*`` and ``root/tags.csv``.

    Images are written as PNG under ``filename`` (which must end in .png). ``items`` may be a
    generator: nothing is kept in memory but the CSV rows. ``tags.csv`` is written last, atomically,
    so a folder with a ``tags.csv`` is complete. Returns ``root``.
    """
    root = Path(root)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["filename", "tags"])
    for filename, image, tags in items:
        rel = PurePosixPath(filename)
        if rel.is_absolute() or ".." in rel.parts or rel.suffix.lower() != ".png":
            raise BadInputError(filename, "expected a relative file name ending in .png")
        bad = [t for t in tags if TAG_SEPARATOR in t or not t.strip()]
        if bad:
            raise BadInputError(filename, f"tags {bad!r} are empty or contain '{TAG_SEPARATOR}'")
        write_bytes(root / IMAGES_DIR / rel, _encode_png(image, filename))
        writer.writerow([rel.as_posix(), TAG_SEPARATOR.join(sorted(set(tags)))])
    write_bytes(root / CSV_NAME, buffer.getvalue().encode("utf-8"))
    return root


def _encode_png(image: np.ndarray, filename: str) -> bytes:
    """HxW or HxWx3 uint8 RGB -> PNG bytes (fast zlib level: images are written in bulk)."""
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise BadInputError(
            filename, f"expected an HxW or HxWx3 uint8 image, got {image.dtype} {image.shape}"
        )
    pixels = image[:, :, ::-1] if image.ndim == 3 else image
    ok, buffer = cv2.imencode(".png", np.ascontiguousarray(pixels), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise BadInputError(filename, "could not be encoded as PNG")
    return buffer.tobytes()


def is_tagged_zip(source: str | os.PathLike) -> bool:
    """Whether the zip holds a tagged folder (``tags.csv`` at its root or in one top-level folder);
    False for a zip that cannot be read (``read_tagged_zip`` then names the problem)."""
    try:
        with zipfile.ZipFile(source) as archive:
            return _zip_prefix(n for n in archive.namelist() if not _hidden(n)) is not None
    except (zipfile.BadZipFile, OSError):
        return False


def extract_zip(
    source: str | os.PathLike,
    dest: str | os.PathLike,
    limits: ZipLimits = ZipLimits(),  # noqa: B008 (frozen, immutable)
) -> list[Problem]:
    """Write a zip's safe members under ``dest`` (checked as ``read_tagged_zip`` does); a Problem for each
    one skipped. BadInputError if ``source`` is not a readable zip or is over the zip's limits."""
    label = str(source)
    problems: list[Problem] = []
    with _open_zip(source, label) as archive:
        infos = archive.infolist()
        too_large = _over_limits(infos, limits)
        if too_large:
            raise BadInputError(label, too_large)
        root = Path(dest)
        for info in infos:
            if info.is_dir():
                continue
            reason = _unsafe_reason(info, limits)
            if reason:
                problems.append(Problem(f"{label}:{info.filename}", f"{reason}; skipped"))
                continue
            if _hidden(info.filename):
                continue
            try:
                data = _read_member(archive, info, limits)
            except BadInputError as exc:
                problems.append(Problem(f"{label}:{info.filename}", exc.problem))
                continue
            target = root.joinpath(*PurePosixPath(info.filename.replace("\\", "/")).parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    return problems
