"""Image header probe and full-decode check.

The probe reads only the header: format and the EXIF-oriented width/height that size and aspect filters
use. The decode check then decodes the image (JPEG at 1/8 scale through PIL's draft mode, which still
reads every byte) so truncated files are rejected before the GPU step sees them.

A multi-frame image (GIF, APNG, TIFF, animated WebP) is its first frame, here and in every later step (CLIP
preprocessing, shard re-encoding, thumbnails): PIL parses and decodes a later frame only when asked to seek
to it, and nothing seeks, so a later frame that is enormous (a GIF frame claiming 65535 x 65535) or broken
costs nothing. libwebp checks every frame of an animation when it opens one, so a WebP with a bad later
frame cannot be opened at all (`image_undecodable`). tests/hostile/test_images.py holds each case.
"""

from __future__ import annotations

import io
import struct
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

from vlcurate.filters.base import Step, reject
from vlcurate.filters.image_hash import near_dup_hash
from vlcurate.filters.near_dedup import HASH_KEY
from vlcurate.schemas.image_header import EXIF_ORIENTATION, ROTATED_ORIENTATIONS, pil_orientation
from vlcurate.schemas.record import Pair


def header_size(data: bytes) -> tuple[str, int, int]:
    """Returns (format, width, height) after EXIF orientation, reading the header only."""
    fast = _jpeg_header(data) if data[:3] == b"\xff\xd8\xff" else None
    if fast is not None:
        width, height, orientation = fast
        if orientation in ROTATED_ORIENTATIONS:
            width, height = height, width
        return "JPEG", width, height
    return pil_header_size(data)


def pil_header_size(data: bytes) -> tuple[str, int, int]:
    """header_size through PIL, for every format."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PIL's bomb warning: the max_pixels filter decides instead
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
                fmt = img.format or "UNKNOWN"
                orientation = pil_orientation(img)
        finally:
            Image.MAX_IMAGE_PIXELS = saved
    if orientation in ROTATED_ORIENTATIONS:
        width, height = height, width
    return fmt, width, height


# Start-of-frame markers (they carry the size); C4, C8 and CC share the range but are not frames.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE_MARKERS = frozenset([0x01, *range(0xD0, 0xD8)])


def _jpeg_header(data: bytes) -> tuple[int, int, int] | None:
    """(width, height, EXIF orientation) of a plain JPEG from its markers, or None to let PIL decide.

    Most web images are JPEGs, and PIL's header parse costs ~40 us; this walk costs a few. Anything
    unusual (no frame before the scan, a height given later by DNL, a component count PIL refuses,
    several EXIF blocks, an MPO's MPF block, an odd EXIF layout) returns None and takes PIL's path, so
    on well-formed headers the answer is PIL's (tests compare the two). Unlike PIL it does not parse the
    quantization and Huffman tables; damage there is left to `decode_check`, which decodes the image.
    """
    position, end = 2, len(data)
    orientation, exif_blocks = 1, 0
    while position + 4 <= end:
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in _STANDALONE_MARKERS:
            position += 2
            continue
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        segment = data[position + 4 : position + 2 + length]
        if length < 2 or len(segment) != length - 2:
            return None
        if marker in _SOF_MARKERS:
            if len(segment) < 6 or segment[5] not in (1, 3, 4):  # PIL reads 1, 3 or 4 components
                return None
            height = int.from_bytes(segment[1:3], "big")
            width = int.from_bytes(segment[3:5], "big")
            if height == 0 or width == 0:
                return None
            return width, height, orientation
        if marker == 0xDA:  # start of scan before any frame
            return None
        if marker == 0xE1 and segment[:6] == b"Exif\x00\x00":
            exif_blocks += 1
            found = _exif_orientation(segment[6:])
            if found is None or exif_blocks > 1:
                return None
            orientation = found
        elif marker == 0xE2 and segment[:4] == b"MPF\x00":
            return None  # PIL opens these as MPO
        position += 2 + length
    return None


def _exif_orientation(tiff: bytes) -> int | None:
    """The orientation tag of IFD0 (1 when absent), or None when the block is not plainly readable."""
    if tiff[:4] == b"II*\x00":
        order = "little"
    elif tiff[:4] == b"MM\x00*":
        order = "big"
    else:
        return None
    offset = int.from_bytes(tiff[4:8], order)
    count_end = offset + 2
    if count_end > len(tiff):
        return None
    count = int.from_bytes(tiff[offset:count_end], order)
    if count_end + 12 * count > len(tiff):
        return None
    for i in range(count):
        entry = tiff[count_end + 12 * i : count_end + 12 * (i + 1)]
        if int.from_bytes(entry[0:2], order) != EXIF_ORIENTATION:
            continue
        kind, values = int.from_bytes(entry[2:4], order), int.from_bytes(entry[4:8], order)
        if values != 1 or kind not in (3, 4):  # one SHORT or LONG, as cameras write it
            return None
        return int.from_bytes(entry[8:10] if kind == 3 else entry[8:12], order)
    return 1


class ProbeImage(Step):
    """Reads the image header only: format and EXIF-oriented width and height; decodes no pixel.

    Sets image_format, width, height. Missing or unreadable bytes are rejected. An animation is its first
    frame, here and in every later step (module docstring)."""

    name = "probe_image"
    reasons = ("image_missing", "image_undecodable")
    needs_image = True

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


class DecodeCheck(Step):
    """Decodes the whole image (JPEG at 1/8 scale) and takes its perceptual hash from that decode.

    Truncated files never reach the GPU, and near_dedup and decontaminate compare the hash without a
    decode pass of their own.

    Truncated or corrupt pixel data is rejected as `image_truncated`. The hash (filters/image_hash.py,
    after EXIF orientation, as lowercase hex) goes to meta["image_phash"] and so into the shards'
    metadata; `image_hash: false` skips it (and is refused while a step that compares hashes is on).

    Runs after the size filters so decompression bombs and tiny images are never decoded. `threads`
    pairs of a batch are decoded at once: the JPEG decoder lets other threads run, so one worker process
    uses more than one core here (the outputs do not depend on it).
    """

    name = "decode_check"
    reasons = ("image_truncated",)
    needs_image = True
    default_sources = {
        "threads": "bench/decode_check.py: 2 threads 1.40x as fast as 1 on a 2-core machine (4: 1.39x); the "
        "hash's Python part holds the interpreter",
    }

    def __init__(self, draft_size: int = 64, image_hash: bool = True, threads: int = 2) -> None:
        if not isinstance(image_hash, bool):
            raise ValueError(f"decode_check.image_hash must be true or false, not {image_hash!r}.")
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"decode_check.threads must be a whole number of 1 or more, not {threads!r}.")
        self.draft_size, self.image_hash, self.threads = draft_size, image_hash, threads

    def apply_threads(self) -> int:
        return self.threads

    def apply(self, pair: Pair) -> None:
        if pair.image is None or pair.reject in ("image_missing", "image_undecodable"):
            return  # nothing to decode; an audit run already knows why
        try:
            image_hash = decode_draft(pair.image, self.draft_size, self.image_hash)
        except Exception:  # any decoder failure is a property of this image, not a bug
            reject(pair, "image_truncated")
            return
        if image_hash is not None:
            pair.meta[HASH_KEY] = image_hash


def decode_draft(data: bytes, draft_size: int = 64, image_hash: bool = True) -> str | None:
    """Decodes every byte of an image (a JPEG at 1/8 scale, at least `draft_size` px) and returns its
    perceptual hash as hex (after EXIF orientation), or None without `image_hash`. Raises what the decoder
    raises. decode_check runs it on every pair's image, decontaminate on every evaluation image, so both
    hash alike."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Image.open(io.BytesIO(data)) as img:
            if img.format == "JPEG":
                img.draft("RGB", (draft_size, draft_size))
            img.load()
            return near_dup_hash(ImageOps.exif_transpose(img)).hex() if image_hash else None
