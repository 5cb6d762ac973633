import io
import struct
import zlib

import pytest
from PIL import Image

from vlcurate.filters.image_probe import DecodeCheck, ProbeImage, header_size
from vlcurate.schemas.record import Pair


def encode(width, height, fmt="JPEG", orientation=None):
    image = Image.new("RGB", (width, height), (200, 30, 30))
    buffer = io.BytesIO()
    kwargs = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kwargs["exif"] = exif.tobytes()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def png_header_only(width, height):
    """A PNG whose header claims a size, with no pixel data: what a decompression bomb's header says."""

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16))


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (encode(320, 240), ("JPEG", 320, 240)),
        (encode(320, 240, orientation=6), ("JPEG", 240, 320)),  # rotated 90: width and height swap
        (encode(320, 240, orientation=8), ("JPEG", 240, 320)),
        (encode(320, 240, orientation=3), ("JPEG", 320, 240)),  # rotated 180: no swap
        (encode(64, 48, "PNG"), ("PNG", 64, 48)),
        (encode(64, 48, "WEBP"), ("WEBP", 64, 48)),
        (encode(64, 48, "PNG", orientation=6), ("PNG", 48, 64)),
        (encode(64, 48, "WEBP", orientation=6), ("WEBP", 48, 64)),
        (png_header_only(50_000, 40_000), ("PNG", 50_000, 40_000)),  # no bomb error from the header read
    ],
)
def test_header_size_is_exif_oriented(data, expected):
    assert header_size(data) == expected


def probe(data):
    pair = Pair(uid="s/1", source="s", image=data)
    ProbeImage().apply(pair)
    return pair


def test_probe_sets_fields_and_rejects_bad_bytes():
    good = probe(encode(300, 200))
    assert (good.image_format, good.width, good.height, good.reject) == ("JPEG", 300, 200, None)
    assert probe(b"not an image at all").reject == "image_undecodable"
    assert probe(encode(300, 200)[:20]).reject == "image_undecodable"
    assert probe(None).reject == "image_missing"
    assert probe(b"").reject == "image_missing"


def test_decode_check_catches_truncated_pixels_that_the_header_probe_misses():
    noisy = Image.effect_noise((300, 300), 60).convert("RGB")
    buffer = io.BytesIO()
    noisy.save(buffer, "JPEG", quality=90)
    truncated = buffer.getvalue()[: len(buffer.getvalue()) // 2]
    pair = probe(truncated)
    assert pair.reject is None and pair.width == 300
    DecodeCheck().apply(pair)
    assert pair.reject == "image_truncated"
    whole = probe(buffer.getvalue())
    DecodeCheck().apply(whole)
    assert whole.reject is None
