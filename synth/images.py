"""Image planters of the synthetic dataset: image sizes for clean, too-small and too-wide pairs, the
encoders of each format, bytes that are undecodable or truncated in exactly the way the probe and
decode steps reject (filters/image_probe.py), and re-posted copies of an image (near duplicates)."""

from __future__ import annotations

import io
import random
import warnings
from typing import Any

from PIL import Image, UnidentifiedImageError

from vlcurate.synth import near_duplicates

FORMAT_WEIGHTS = {"JPEG": 70, "PNG": 15, "WEBP": 15}
EXT = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
_CLEAN_SIDE = (224, 512)
# How a near_duplicate copies its original (near_copy), in the order they are tried after the drawn one.
NEAR_COPY_KINDS = ("reencode", "resize", "crop", "recaption")


def clean_size(rng: random.Random) -> tuple[int, int]:
    while True:
        width, height = rng.randint(*_CLEAN_SIDE), rng.randint(*_CLEAN_SIDE)
        if _is_clean_size(width, height):
            return width, height


def _is_clean_size(width: int, height: int) -> bool:
    """Each side 224-512 px, aspect at most 2: no size filter comes near it."""
    sides_ok = _CLEAN_SIDE[0] <= min(width, height) and max(width, height) <= _CLEAN_SIDE[1]
    return sides_ok and max(width, height) / min(width, height) <= 2.0


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


def near_copy(data: bytes, kind: str, rng: random.Random) -> bytes | None:
    """The image re-posted (a NEAR_COPY_KINDS kind): `reencode` as JPEG quality 50-75; `resize` to
    0.75-0.9 of each side or `crop` 2-5% of each side's length (centred), then JPEG quality 75-90;
    `recaption` the same bytes (its pair has another caption). None when a resize or crop would leave a
    clean image's size (clean_size: a side below 224 px, or rounding taking the aspect above 2)."""
    if kind == "recaption":
        return data
    with Image.open(io.BytesIO(data)) as img:
        decoded = img.convert("RGB")
    if kind == "reencode":
        return near_duplicates.jpeg(decoded, rng.randint(50, 75))
    if kind == "resize":
        changed = near_duplicates.resized(decoded, rng.uniform(0.75, 0.9))
    else:
        assert kind == "crop", kind
        changed = near_duplicates.cropped(decoded, rng.uniform(0.02, 0.05))
    return near_duplicates.jpeg(changed, rng.randint(75, 90)) if _is_clean_size(*changed.size) else None
