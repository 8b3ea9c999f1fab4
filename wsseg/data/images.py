"""Safe image reading: any common format in, HxWx3 uint8 RGB out, or a BadInputError naming the file.

The pixel count is checked from the header before anything is decoded, so a small file that
claims to be a gigapixel image (a decompression bomb) is refused without allocating its pixels.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from wsseg.errors import BadInputError

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")
"""File name endings (lower case) that are treated as images."""

DEFAULT_MAX_PIXELS = 40_000_000
"""Largest width x height accepted by default (about a 7,300 x 5,500 photo)."""

MIN_SIDE = 32
"""Smallest width and height, in pixels, of an image the import accepts.

Measured with every stage's method on untrained models of every backbone: selective search refuses a
1-pixel side and finds no region under 8 px (its superpixels hold at least 20 pixels), and the
estimator's network fails under 5 px; from 8 px on every stage runs and yields a pseudo mask. But the
class response maps have one cell per 8 pixels (16 for MobileNetV3): a 20x20 image gets 3x3 cells
(2x2), no more than the 3x3 window the peak search looks in, so its one peak is the map's maximum
wherever the object is, and 20x20 is refused. At 32 px the stride-8 maps have 4x4 cells, and 32 is
also Mask R-CNN's smallest input size (``MaskRCNNConfig.image_size``)."""


def content_hash(data: bytes) -> str:
    """SHA-256 of ``data`` as 64 lower-case hex digits (identifies an image by its bytes)."""
    return hashlib.sha256(data).hexdigest()


def is_image_name(name: str) -> bool:
    """Whether ``name`` ends with one of :data:`IMAGE_SUFFIXES` (case-insensitive)."""
    return name.lower().endswith(IMAGE_SUFFIXES)


def check_min_size(width: int, height: int, name: str, min_side: int = MIN_SIDE) -> None:
    """BadInputError naming ``name``, its size and the minimum when a side is under ``min_side`` pixels."""
    if min(width, height) < min_side:
        raise BadInputError(
            name,
            f"{width}x{height} pixels is too small: the pipeline needs at least {min_side}x{min_side} "
            "(its class maps have one cell per 8 pixels)",
        )


def image_size(source: str | os.PathLike | bytes, name: str | None = None) -> tuple[int, int]:
    """(width, height) read from the header only; BadInputError if it is not an image."""
    label = _label(source, name)
    with _open(source, label, max_pixels=1 << 62) as img:
        return img.size


def read_image(
    source: str | os.PathLike | bytes,
    name: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Decode an image file (path or its bytes) to an HxWx3 uint8 RGB array.

    Grayscale, palette, RGBA (alpha dropped), CMYK and 16-bit or float images are converted;
    16-bit values are scaled to 0..255. EXIF orientation is applied, so the array is the image as a
    viewer shows it. Multi-frame files give their first frame.

    ``name`` is how the file is named in errors (default: the path, or ``"<bytes>"``).
    Raises BadInputError when the data is not an image, is corrupt or truncated, or has more than
    ``max_pixels`` pixels (checked before decoding).
    """
    label = _label(source, name)
    with _open(source, label, max_pixels) as img:
        try:
            img.load()
            img = ImageOps.exif_transpose(img)
            return _to_rgb(img)
        except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
            raise BadInputError(label, f"corrupt or truncated image ({exc})") from None


def _label(source: str | os.PathLike | bytes, name: str | None) -> str:
    if name is not None:
        return name
    return "<bytes>" if isinstance(source, bytes | bytearray) else str(source)


def _open(source: str | os.PathLike | bytes, label: str, max_pixels: int) -> Image.Image:
    """Open lazily (header only) and check the pixel count against ``max_pixels``."""
    if isinstance(source, bytes | bytearray):
        stream: io.BytesIO | Path = io.BytesIO(source)
    else:
        stream = Path(source)
        if not stream.is_file():
            raise BadInputError(label, "file not found")
    try:
        with warnings.catch_warnings():
            # PIL warns above its own limit and refuses twice above it; our limit is checked below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(stream)
    except Image.DecompressionBombError as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(found.group(1)):,} pixels" if found else "the image"
        raise BadInputError(
            label, f"{size} is over the limit of {max_pixels:,} pixels; resize it first"
        ) from None
    except (UnidentifiedImageError, ValueError):
        if _has_image_signature(source):
            raise BadInputError(label, "corrupt or truncated image (its header cannot be read)") from None
        kinds = ", ".join(s.lstrip(".") for s in IMAGE_SUFFIXES)
        raise BadInputError(label, f"not an image (expected one of: {kinds})") from None
    except (OSError, SyntaxError, EOFError) as exc:
        raise BadInputError(label, f"corrupt or truncated image ({exc})") from None
    width, height = img.size
    if width * height > max_pixels:
        img.close()
        raise BadInputError(
            label, f"{width}x{height} pixels is over the limit of {max_pixels:,} pixels; resize it first"
        )
    return img


_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")


def _has_image_signature(source: str | os.PathLike | bytes) -> bool:
    """Whether the first bytes are those of a known image format (so a failure means corruption)."""
    if isinstance(source, bytes | bytearray):
        head = bytes(source[:16])
    else:
        with open(source, "rb") as handle:
            head = handle.read(16)
    return head.startswith(_SIGNATURES) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def _to_rgb(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(img, dtype=np.float64)
        if mode == "F":
            top = 1.0 if values.max(initial=0.0) <= 1.0 else 255.0
        else:
            top = 255.0 if values.max(initial=0.0) <= 255 else 65535.0
        gray = np.clip(np.round(values * (255.0 / top)), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))
