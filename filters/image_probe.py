"""Image header probe and full-decode check.

The probe reads only the header: format and the EXIF-oriented width/height that size and aspect filters
use. The decode check then decodes the image (JPEG at 1/8 scale through PIL's draft mode, which still
reads every byte) so truncated files are rejected before the GPU step sees them.
"""

from __future__ import annotations

import io
import struct
import warnings

from PIL import Image, UnidentifiedImageError

from vlcurate.filters.base import Step, reject
from vlcurate.filters.registry import register
from vlcurate.schemas.record import Pair

# EXIF orientations 5-8 rotate by 90 or 270 degrees, swapping width and height.
_ROTATED_ORIENTATIONS = {5, 6, 7, 8}
_EXIF_ORIENTATION = 0x0112


def header_size(data: bytes) -> tuple[str, int, int]:
    """Returns (format, width, height) after EXIF orientation, reading the header only."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PIL's bomb warning: the max_pixels filter decides instead
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
                fmt = img.format or "UNKNOWN"
                orientation = _orientation(img)
        finally:
            Image.MAX_IMAGE_PIXELS = saved
    if orientation in _ROTATED_ORIENTATIONS:
        width, height = height, width
    return fmt, width, height


def _orientation(img: Image.Image) -> int:
    # Read EXIF from the header chunks only: PIL's PNG getexif() would decode the whole image to find
    # a late eXIf chunk (the spec puts it before the pixel data anyway).
    raw = img.info.get("exif")
    if not raw:
        return 1
    exif = Image.Exif()
    exif.load(raw)
    value = exif.get(_EXIF_ORIENTATION, 1)
    return value if isinstance(value, int) else 1


@register
class ProbeImage(Step):
    """Header-only probe: sets image_format, width, height. Missing or unreadable bytes are rejected."""

    name = "probe_image"
    reasons = ("image_missing", "image_undecodable")

    def apply(self, pair: Pair) -> None:
        if not pair.image:
            reject(pair, "image_missing")
            return
        try:
            pair.image_format, pair.width, pair.height = header_size(pair.image)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, struct.error):
            reject(pair, "image_undecodable")
            return
        if pair.width <= 0 or pair.height <= 0:
            reject(pair, "image_undecodable")


@register
class DecodeCheck(Step):
    """Decodes the whole image; truncated or corrupt pixel data is rejected as `image_truncated`.

    Runs after the size filters so decompression bombs and tiny images are never decoded.
    """

    name = "decode_check"
    reasons = ("image_truncated",)

    def __init__(self, draft_size: int = 64) -> None:
        self.draft_size = draft_size

    def apply(self, pair: Pair) -> None:
        if pair.image is None or pair.reject in ("image_missing", "image_undecodable"):
            return  # nothing to decode; an audit run already knows why
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(io.BytesIO(pair.image)) as img:
                    if img.format == "JPEG":
                        img.draft("RGB", (self.draft_size, self.draft_size))
                    img.load()
        except Exception:  # any decoder failure is a property of this image, not a bug
            reject(pair, "image_truncated")
