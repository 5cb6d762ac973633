"""Image planters of the synthetic dataset: image sizes for clean, too-small and too-wide pairs, the
encoders of each format, and bytes that are undecodable or truncated in exactly the way the probe and
decode steps reject (filters/image_probe.py)."""

from __future__ import annotations

import io
import random
import warnings
from typing import Any

from PIL import Image, UnidentifiedImageError

FORMAT_WEIGHTS = {"JPEG": 70, "PNG": 15, "WEBP": 15}
EXT = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
_CLEAN_SIDE = (224, 512)


def clean_size(rng: random.Random) -> tuple[int, int]:
    while True:
        width, height = rng.randint(*_CLEAN_SIDE), rng.randint(*_CLEAN_SIDE)
        if max(width, height) / min(width, height) <= 2.0:
            return width, height


def small_size(rng: random.Random) -> tuple[int, int]:
    short = rng.randint(40, 180)
    long = rng.randint(short, int(short * 2.2))  # aspect stays <= 2.2: only too_small applies
    return (short, long) if rng.random() < 0.5 else (long, short)


def wide_size(rng: random.Random) -> tuple[int, int]:
    short = rng.randint(208, 256)
    long = round(short * rng.uniform(3.5, 6.0))
    return (long, short) if rng.random() < 0.5 else (short, long)


def encode(image: Image.Image, fmt: str, rng: random.Random, orientation: int | None = None) -> bytes:
    buffer = io.BytesIO()
    if fmt == "JPEG":
        kwargs: dict[str, Any] = {"quality": rng.randint(80, 90)}
        if orientation is not None:
            exif = Image.Exif()
            exif[0x0112] = orientation
            kwargs["exif"] = exif.tobytes()
        image.save(buffer, "JPEG", **kwargs)
    elif fmt == "PNG":
        image.save(buffer, "PNG", compress_level=1)  # PNG dominates generation time: speed over size
    else:
        image.save(buffer, "WEBP", quality=rng.randint(75, 90), method=0)
    return buffer.getvalue()


def _open_error(data: bytes) -> Exception | None:
    """What PIL raises when opening the header (what the probe step does), or None when it opens."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)):
                return None
    except Exception as exc:
        return exc


def _decodes(data: bytes) -> bool:
    """True when the image decodes fully, plainly or in JPEG draft mode (as decode_check does)."""
    for draft in (False, True):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(io.BytesIO(data)) as img:
                    if draft:
                        img.draft("RGB", (64, 64))
                    img.load()
        except Exception:
            continue
        return True
    return False


_ERROR_PAGE = (
    "<!DOCTYPE html><html><head><title>404 Not Found</title></head><body><h1>Not Found</h1>"
    "<p>The requested URL /photos/{n}.jpg was not found on this server.</p></body></html>"
)


def undecodable(jpeg: bytes, rng: random.Random) -> bytes:
    """Bytes PIL cannot identify; rerolled in the rare case that random bytes pass some format check."""
    while True:
        kind = rng.choice(("random", "error_page", "junk_header"))
        if kind == "random":
            data = rng.randbytes(rng.randint(200, 4000))
        elif kind == "error_page":
            data = _ERROR_PAGE.format(n=rng.randrange(10**6)).encode()
        else:
            cut = rng.randint(16, 64)
            data = rng.randbytes(cut) + jpeg[cut:]
        # Only "cannot identify" is planted: another error might map to another reject reason.
        if isinstance(_open_error(data), UnidentifiedImageError):
            return data


def truncated(jpeg: bytes, rng: random.Random) -> bytes:
    fraction = rng.uniform(0.4, 0.7)
    while fraction > 0.1:
        data = jpeg[: int(len(jpeg) * fraction)]
        if _open_error(data) is None and not _decodes(data):
            return data
        fraction -= 0.05  # not seen in practice: a cut this deep always breaks the entropy-coded data
    raise RuntimeError("could not truncate a JPEG into a header-only file")
