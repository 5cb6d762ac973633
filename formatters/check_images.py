"""Whether one image's bytes are what a trainer can load: fully decoded (first frame) and converted to RGB,
as a Qwen-VL dataloader does, not just a header probe. The pipeline calls it once per distinct image.

Reasons (formatters/check_findings.py STRUCTURAL_REASONS):
- `image_missing`: no bytes (None);
- `too_many_pixels`: width x height over `max_pixels` (default PIL's decompression-bomb limit, the default
  of clean's `max_pixels` step; PIL itself refuses twice its limit whatever `max_pixels` says): refused
  from the header, never decoded;
- `image_truncated`: the data ends before the decoder is done. PIL says so ("image file is truncated",
  "Truncated File Read"); libwebp does not (any failure is "could not create decoder object"), so a
  WebP is judged truncated when its RIFF header promises more bytes than there are;
- `image_undecodable`: anything else PIL cannot identify, decode or convert to RGB (garbage bytes, a
  corrupt stream). JPEG decoders skip over corrupt entropy-coded data with a warning only, so a JPEG
  scrambled in the middle may decode (as it would for the trainer).

`ImageFile.LOAD_TRUNCATED_IMAGES`, when something in the process has set it, makes PIL fill truncated
images with grey instead of failing: the check refuses to run then (RuntimeError) rather than pass them.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageFile, UnidentifiedImageError

from vlcurate.formatters.check_findings import Problem
from vlcurate.schemas.image_header import PIL_MAX_IMAGE_PIXELS, ROTATED_ORIENTATIONS, pil_orientation

_TRUNCATED_MESSAGES = ("truncated",)  # PIL: "image file is truncated (...)", "Truncated File Read"


def check_image(data: bytes | None, max_pixels: int = PIL_MAX_IMAGE_PIXELS) -> Problem | None:
    """The image's problem, or None when it decodes (see the module docstring)."""
    return check_image_size(data, max_pixels)[0]


def check_image_size(
    data: bytes | None, max_pixels: int = PIL_MAX_IMAGE_PIXELS
) -> tuple[Problem | None, tuple[int, int] | None]:
    """(problem, (width, height) after EXIF orientation). The size is that of the decoded first frame,
    turned as clean's probe turns it (filters/image_probe.py), so it compares with a shard's stored
    width/height; None when the image does not decode."""
    if data is None:
        return Problem("image_missing", "no image bytes"), None
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set: truncated images would pass")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # bomb and EXIF warnings: the limit below decides
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
                if width * height > max_pixels:
                    return Problem("too_many_pixels", f"{width}x{height} > {max_pixels} pixels"), None
                # Read before load(), from the header chunks, as clean's probe did (a PNG's late eXIf
                # chunk only appears in img.info once the pixels are read).
                turned = pil_orientation(img) in ROTATED_ORIENTATIONS
                img.load()
                img.convert("RGB")
    except Image.DecompressionBombError as exc:  # over twice PIL's limit when max_pixels is raised
        return Problem("too_many_pixels", str(exc)), None
    except UnidentifiedImageError as exc:
        return Problem("image_undecodable", _short(exc)), None
    except Exception as exc:  # any decoder failure is a property of this image, not a bug
        reason = "image_truncated" if _truncated(exc, data) else "image_undecodable"
        return Problem(reason, _short(exc)), None
    if width <= 0 or height <= 0:
        return Problem("image_undecodable", f"{width}x{height} image"), None
    return None, ((height, width) if turned else (width, height))


def _truncated(exc: Exception, data: bytes) -> bool:
    if isinstance(exc, EOFError) or any(m in str(exc).lower() for m in _TRUNCATED_MESSAGES):
        return True
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":  # the RIFF size counts the bytes after itself
        return len(data) < 8 + int.from_bytes(data[4:8], "little")
    return False


def _short(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:200]
