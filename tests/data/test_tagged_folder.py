import io
import stat
import struct
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

from wsseg.data.tagged_folder import ZipLimits, read_tagged_folder, read_tagged_zip, write_tagged_folder
from wsseg.errors import BadInputError


def png(value: int = 0, size: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def bomb_png() -> bytes:
    data = bytearray(png())
    ihdr = data[12:29]
    ihdr[4:12] = struct.pack(">II", 9000, 9000)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    return bytes(data)


GOOD_CSV = "filename,tags\na.png,cat; dog\nb.png,\nsub/c.png,dog\n"


def make_folder(root, csv_text=GOOD_CSV, extra=None, csv_bytes=None):
    (root / "images" / "sub").mkdir(parents=True)
    files = {"a.png": png(10), "b.png": png(20), "sub/c.png": png(30), **(extra or {})}
    for name, data in files.items():
        (root / "images" / name).write_bytes(data)
    (root / "tags.csv").write_bytes(csv_bytes if csv_bytes is not None else csv_text.encode())
    return root


def names(result):
    return [item.filename for item in result.items]


def one_problem(result, needle):
    """Exactly one problem, mentioning ``needle`` in its source or message."""
    assert len(result.problems) == 1, result.problems
    problem = result.problems[0]
    assert needle in f"{problem.source} {problem.message}", problem
    return problem


def test_good_folder(tmp_path):
    result = read_tagged_folder(make_folder(tmp_path))
    assert result.problems == []
    assert names(result) == ["a.png", "b.png", "sub/c.png"]
    assert result.items[0].tags == ("cat", "dog")
    assert result.items[1].tags == ()
    assert result.classes == ("cat", "dog")
    assert result.items[0].load().shape == (8, 8, 3)
    assert (result.items[2].width, result.items[2].height) == (8, 8)


@pytest.mark.parametrize(
    ("extra", "row", "needle", "message"),
    [
        ({"bad.png": png()[:40]}, "bad.png,cat", "images/bad.png", "corrupt or truncated"),
        ({"bad.png": b"hello, not an image"}, "bad.png,cat", "images/bad.png", "not an image"),
        ({"bad.png": bomb_png()}, "bad.png,cat", "images/bad.png", "over the limit"),
        ({}, "missing.png,cat", "missing.png", "does not exist"),
        ({"extra.png": png()}, "", "images/extra.png", "not listed in tags.csv; skipped"),
        ({}, "a.png,bird", "a.png", "listed again"),
        ({"notes.txt": b"x"}, "notes.txt,cat", "images/notes.txt", "not an image"),
        ({"d.png": png()}, "d.png,cat,dog", "line 5", "separate tags with ';'"),
    ],
)
def test_each_bad_case_gives_one_problem(tmp_path, extra, row, needle, message):
    result = read_tagged_folder(make_folder(tmp_path, GOOD_CSV + row + "\n", extra))
    problem = one_problem(result, needle)
    assert message in problem.message
    assert names(result) == ["a.png", "b.png", "sub/c.png"]
    assert result.items[0].tags == ("cat", "dog")  # a duplicate row does not override the first


def test_header_without_expected_columns(tmp_path):
    result = read_tagged_folder(make_folder(tmp_path, "file,labels\na.png,cat\n"))
    problem = one_problem(result, "tags.csv")
    assert "'filename' and 'tags'" in problem.message and "'file', 'labels'" in problem.message
    assert result.items == []


def test_unknown_extra_column_is_reported_and_ignored(tmp_path):
    result = read_tagged_folder(
        make_folder(tmp_path, "filename,tags,notes\na.png,cat,x\nb.png,,\nsub/c.png,dog,\n")
    )
    assert "notes" in one_problem(result, "tags.csv").message
    assert len(result.items) == 3


def test_non_utf8_csv_is_reported_and_still_read(tmp_path):
    csv_bytes = "filename,tags\na.png,café\nb.png,\nsub/c.png,dog\n".encode("cp1252")
    result = read_tagged_folder(make_folder(tmp_path, csv_bytes=csv_bytes))
    problem = one_problem(result, "tags.csv")
    assert "not UTF-8" in problem.message and "line 2" in problem.message
    assert result.items[0].tags == ("café",)


def test_utf8_bom_and_utf16_are_fine(tmp_path):
    result = read_tagged_folder(make_folder(tmp_path, csv_bytes=GOOD_CSV.encode("utf-8-sig")))
    assert result.problems == [] and len(result.items) == 3
    (tmp_path / "tags.csv").write_bytes(GOOD_CSV.encode("utf-16"))
    result = read_tagged_folder(tmp_path)
    assert result.problems == [] and len(result.items) == 3


def test_empty_folder(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "tags.csv").write_text("filename,tags\n")
    result = read_tagged_folder(tmp_path)
    assert "no images found in images/" in one_problem(result, str(tmp_path)).message


def test_missing_csv(tmp_path):
    make_folder(tmp_path)
    (tmp_path / "tags.csv").unlink()
    assert "not found" in one_problem(read_tagged_folder(tmp_path), "tags.csv").message


def test_not_a_folder(tmp_path):
    with pytest.raises(BadInputError, match="not a folder"):
        read_tagged_folder(tmp_path / "nothing")


def test_case_mismatch_hint(tmp_path):
    result = read_tagged_folder(make_folder(tmp_path, GOOD_CSV + "D.PNG,cat\n", {"d.png": png()}))
    assert len(result.problems) == 1 and "did you mean d.png?" in result.problems[0].message


# --------------------------------------------------------------------------- zips


def make_zip(entries: dict[str, bytes], symlinks=(), compress=zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compress) as archive:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = compress
            if name in symlinks:
                info.create_system = 3
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, data)
    return buffer.getvalue()


GOOD_ENTRIES = {
    "tags.csv": GOOD_CSV.encode(),
    "images/a.png": png(1),
    "images/b.png": png(2),
    "images/sub/c.png": png(3),
}


def test_zip_at_root_and_in_one_folder(tmp_path):
    result = read_tagged_zip(make_zip(GOOD_ENTRIES))
    assert result.problems == [] and names(result) == ["a.png", "b.png", "sub/c.png"]
    assert result.items[0].data is not None and result.items[0].load()[0, 0, 0] == 1
    nested = {f"mydata/{k}": v for k, v in GOOD_ENTRIES.items()} | {"__MACOSX/._x": b"junk"}
    path = tmp_path / "upload.zip"
    path.write_bytes(make_zip(nested))
    result = read_tagged_zip(path)
    assert result.problems == [] and len(result.items) == 3


@pytest.mark.parametrize(
    ("name", "symlink", "message"),
    [
        ("../evil.png", False, "leaves the zip folder"),
        ("images/../../evil.png", False, "leaves the zip folder"),
        ("/etc/evil.png", False, "leaves the zip folder"),
        ("images/link.png", True, "symbolic link"),
    ],
)
def test_zip_slip_and_symlinks_refused(name, symlink, message):
    entries = GOOD_ENTRIES | {name: png() if not symlink else b"/etc/passwd"}
    result = read_tagged_zip(make_zip(entries, symlinks={name} if symlink else ()))
    problem = one_problem(result, name)
    assert message in problem.message
    assert len(result.items) == 3


def test_zip_bomb_refused():
    zeros = b"\0" * (3 << 20)
    entries = GOOD_ENTRIES | {"images/zeros.png": zeros}
    result = read_tagged_zip(make_zip(entries, compress=zipfile.ZIP_DEFLATED))
    assert "compression ratio" in one_problem(result, "images/zeros.png").message
    assert len(result.items) == 3
    result = read_tagged_zip(make_zip(entries), limits=ZipLimits(max_total_bytes=1 << 20))
    assert "over the limit" in one_problem(result, "<zip>").message and result.items == []


def test_zip_without_csv_and_not_a_zip():
    result = read_tagged_zip(make_zip({"images/a.png": png()}))
    assert "no tags.csv" in one_problem(result, "<zip>").message
    with pytest.raises(BadInputError, match="not a readable zip"):
        read_tagged_zip(b"PK but not really")


# --------------------------------------------------------------------------- writing


def test_write_then_read(tmp_path):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (6, 5, 3), dtype=np.uint8) for _ in range(3)]
    items = [("x0.png", images[0], ["b", "a"]), ("x1.png", images[1], []), ("d/x2.png", images[2], ["a"])]
    write_tagged_folder(tmp_path, iter(items))
    result = read_tagged_folder(tmp_path)
    assert result.problems == []
    assert [(i.filename, i.tags) for i in result.items] == [
        ("x0.png", ("a", "b")),
        ("x1.png", ()),
        ("d/x2.png", ("a",)),
    ]
    for item, image in zip(result.items, images, strict=True):
        np.testing.assert_array_equal(item.load(), image)
    with pytest.raises(BadInputError):
        write_tagged_folder(tmp_path / "o", [("x.png", images[0], ["a;b"])])
    with pytest.raises(BadInputError):
        write_tagged_folder(tmp_path / "o", [("../x.png", images[0], [])])
