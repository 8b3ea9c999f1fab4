"""Small photo-like tagged images for the browser tests, made here (not ``wsseg.data.shapes``): a
smooth two-colour gradient, textured noise, and a few shaded objects per image: "apple" (round, warm
colours) and "leaf" (long thin ellipses, greens), tagged in ``tags.csv``, zipped as a tagged folder."""

from __future__ import annotations

import csv
import io
import zipfile

import cv2
import numpy as np

CLASSES = ("apple", "leaf")


def photo(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, list[str]]:
    """One HxWx3 uint8 picture and its tags."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xx / width + np.sin(angle) * yy / height + 1) / 2
    top, bottom = rng.uniform(40, 200, 3), rng.uniform(40, 200, 3)
    image = top * ramp[..., None] + bottom * (1 - ramp[..., None])
    grain = cv2.GaussianBlur(rng.normal(0, 18, (height, width)).astype(np.float32), (0, 0), 1.5)
    image += grain[..., None]
    tags = []
    for _ in range(rng.integers(1, 4)):
        kind = CLASSES[rng.integers(0, len(CLASSES))]
        centre = (int(rng.integers(15, width - 15)), int(rng.integers(15, height - 15)))
        if kind == "apple":
            radius = int(rng.integers(10, 20))
            axes, colour = (
                (radius, int(radius * rng.uniform(0.85, 1.0))),
                (rng.uniform(170, 240), rng.uniform(20, 90), 30),
            )
        else:
            axes, colour = (
                (int(rng.integers(16, 26)), int(rng.integers(4, 8))),
                (40, rng.uniform(120, 200), 50),
            )
        mask = np.zeros((height, width), np.uint8)
        cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1, cv2.LINE_AA)
        alpha = cv2.GaussianBlur(mask.astype(np.float32) / 255, (0, 0), 0.8)[..., None]
        shade = 1 - 0.35 * ((yy - centre[1]) / max(axes)).clip(-1, 1)[..., None]  # lit from above
        image = image * (1 - alpha) + np.asarray(colour, np.float32) * shade * alpha
        tags.append(kind)
    return np.clip(image, 0, 255).astype(np.uint8), sorted(set(tags))


def tagged_zip(count: int = 8, seed: int = 0, size: tuple[int, int] = (96, 128)) -> bytes:
    """A zip of ``photos/images/photo-K.jpg`` and ``photos/tags.csv`` (``filename,tags``, ``;``-separated)."""
    rng = np.random.default_rng(seed)
    out = io.BytesIO()
    rows = []
    with zipfile.ZipFile(out, "w") as archive:
        for k in range(count):
            image, tags = photo(rng, *size)
            ok, jpeg = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
            assert ok
            archive.writestr(f"photos/images/photo-{k}.jpg", jpeg.tobytes())
            rows.append((f"photo-{k}.jpg", ";".join(tags)))
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["filename", "tags"])
        writer.writerows(rows)
        archive.writestr("photos/tags.csv", text.getvalue())
    return out.getvalue()
