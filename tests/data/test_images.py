import hashlib
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from wsseg.data.images import content_hash, image_size, read_image
from wsseg.errors import BadInputError


def encode(array: np.ndarray, fmt: str = "PNG", mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    img = Image.fromarray(array) if mode is None else Image.fromarray(array).convert(mode)
    img.save(buffer, format=fmt)
    return buffer.getvalue()


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny valid-looking PNG whose header declares width x height (a decompression bomb's header)."""
    data = bytearray(encode(np.zeros((1, 1, 3), np.uint8)))
    ihdr = data[12:29]  # chunk type + 13 bytes of data
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    return bytes(data)


def test_rgb_png_round_trip(tmp_path):
    array = np.random.default_rng(0).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    path = tmp_path / "a.png"
    path.write_bytes(encode(array))
    out = read_image(path)
    assert out.dtype == np.uint8 and out.shape == (7, 9, 3)
    np.testing.assert_array_equal(out, array)
    np.testing.assert_array_equal(read_image(path.read_bytes(), "a.png"), array)
    assert image_size(path) == (9, 7)


def test_grayscale_rgba_palette_and_16_bit_become_rgb():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    out = read_image(encode(gray), "g.png")
    assert out.shape == (3, 4, 3) and (out == gray[:, :, None]).all()

    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 255
    assert (read_image(encode(rgba), "rgba.png") == [200, 0, 0]).all()

    pal = read_image(encode(np.full((2, 2, 3), 77, np.uint8), mode="P"), "p.png")
    assert pal.shape == (2, 2, 3)

    deep = np.array([[0, 65535], [257 * 10, 257 * 100]], np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(deep).save(buffer, format="PNG")
    out16 = read_image(buffer.getvalue(), "deep.png")
    np.testing.assert_array_equal(out16[..., 0], [[0, 255], [10, 100]])


def test_jpeg_decodes():
    out = read_image(encode(np.full((8, 8, 3), 128, np.uint8), "JPEG"), "x.jpg")
    assert out.shape == (8, 8, 3) and abs(int(out.mean()) - 128) <= 2


def test_not_an_image_names_the_file():
    with pytest.raises(BadInputError, match="not an image") as info:
        read_image(b"filename,tags\n", "images/notes.png")
    assert info.value.source == "images/notes.png"


def test_truncated_image_is_reported():
    data = encode(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    with pytest.raises(BadInputError, match="corrupt or truncated") as info:
        read_image(data[: len(data) // 2], "half.png")
    assert "half.png" in str(info.value)


def test_pixel_limit_checked_before_decoding():
    bomb = png_claiming_size(50_000, 50_000)
    assert len(bomb) < 100
    with pytest.raises(BadInputError, match=r"over the limit of 40,000,000 pixels"):
        read_image(bomb, "bomb.png")
    with pytest.raises(BadInputError, match=r"10000x5000 pixels is over the limit of 40,000,000"):
        read_image(png_claiming_size(10_000, 5_000), "big.png")
    with pytest.raises(BadInputError, match="over the limit of 10"):
        read_image(encode(np.zeros((4, 4, 3), np.uint8)), "small.png", max_pixels=10)


def test_missing_file(tmp_path):
    with pytest.raises(BadInputError, match="not found"):
        read_image(tmp_path / "nope.png")


def test_content_hash():
    assert content_hash(b"abc") == hashlib.sha256(b"abc").hexdigest()
    assert len(content_hash(b"")) == 64
