import io
import struct
import zlib

import pytest
from PIL import Image

from vlcurate.filters.image_probe import DecodeCheck, ProbeImage, header_size
from vlcurate.filters.runner import StepRunner
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


def big_endian_exif(orientation: int) -> bytes:
    """An EXIF block in Motorola byte order (PIL writes Intel order) holding one orientation entry."""
    ifd = struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(">I", 0)
    return b"Exif\x00\x00" + b"MM\x00*" + struct.pack(">I", 8) + ifd


def with_app1(jpeg: bytes, body: bytes) -> bytes:
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body + jpeg[2:]


def jpeg_variants():
    rng_sizes = [(1, 1), (17, 9), (640, 480), (481, 1023), (1600, 1200)]
    out = []
    for i, (w, h) in enumerate(rng_sizes):
        for mode in ("RGB", "L", "CMYK"):
            image = Image.new(mode, (w, h))
            for orientation in (None, 1, 5, 6, 7, 8, 2):
                for progressive in (False, True):
                    buffer = io.BytesIO()
                    kwargs = {"progressive": progressive, "quality": 80}
                    if orientation is not None:
                        exif = Image.Exif()
                        exif[0x0112] = orientation
                        exif[0x010F] = "maker"  # another tag before/after, as cameras write several
                        kwargs["exif"] = exif.tobytes()
                    image.save(buffer, "JPEG", **kwargs)
                    out.append(buffer.getvalue())
        out.append(with_app1(encode(w, h), big_endian_exif(6 if i % 2 else 8)))
    return out


def test_the_fast_jpeg_path_answers_as_pil_does():
    from vlcurate.filters.image_probe import _jpeg_header, pil_header_size

    variants = jpeg_variants()
    fast_taken = 0
    for data in variants:
        fast_taken += _jpeg_header(data) is not None
        assert header_size(data) == pil_header_size(data)
    assert fast_taken == len(variants)  # the fast path answered every one of these plain JPEGs


def test_unusual_jpegs_go_to_pil():
    from vlcurate.filters.image_probe import _jpeg_header

    plain = encode(64, 48)
    two_exif = with_app1(with_app1(plain, big_endian_exif(6)), big_endian_exif(8))
    mpo_like = plain[:2] + b"\xff\xe2" + struct.pack(">H", 10) + b"MPF\x00" + b"\x00" * 4 + plain[2:]
    truncated = plain[:30]
    for data in (two_exif, mpo_like, truncated):
        assert _jpeg_header(data) is None
    assert probe(truncated).reject == "image_undecodable"


def _decode_images() -> list:
    """JPEGs and PNGs of noise, truncated ones among them (the header still reads), garbage and none."""
    images = []
    for i in range(40):
        noisy = Image.effect_noise((64 + 7 * i, 48 + 5 * i), 40 + i).convert("RGB")
        buffer = io.BytesIO()
        noisy.save(buffer, "PNG" if i % 5 == 0 else "JPEG", quality=85)
        data = buffer.getvalue()
        images.append(data[: len(data) // 2] if i % 7 == 3 else data)
    return [*images, b"garbage", None]


def test_decode_check_in_threads_gives_what_one_thread_gives():
    images = _decode_images()
    outcomes = []
    for threads in (1, 4):
        pairs = [probe(data) for data in images]
        for i, pair in enumerate(pairs):
            pair.uid = f"s/{i:02d}"
        runner = StepRunner({"s": [DecodeCheck(threads=threads)]}, audit=True)
        runner.run(pairs)
        outcomes.append(
            (
                [(p.uid, p.reject, p.meta.get("image_phash")) for p in pairs],
                dict(runner.stats.step_seen),
                dict(runner.stats.step_dropped),
            )
        )
    assert outcomes[0] == outcomes[1]
    found, _, dropped = outcomes[1]
    assert dropped == {("decode_check", "s", "image_truncated"): 6}  # i = 3, 10, 17, 24, 31, 38
    assert sum(phash is not None for _, _, phash in found) == 34


class _Raises:
    """A threaded step that raises on some pairs: they become step_error rejects, the rest run."""

    name = "raises"
    histograms: dict = {}

    def apply_threads(self) -> int:
        return 3

    def apply(self, pair: Pair) -> None:
        if pair.caption.endswith("7"):
            raise RuntimeError(f"cannot take {pair.caption}")
        pair.meta["seen"] = True


def test_a_threaded_step_that_raises_rejects_that_pair_only():
    pairs = [Pair(uid=f"s/{i}", source="s", caption=f"caption {i}") for i in range(20)]
    runner = StepRunner({"s": [_Raises()]})
    kept = runner.run(pairs)
    assert [p.uid for p in pairs if p.reject] == ["s/7", "s/17"]
    assert pairs[7].reject == "step_error_raises"
    assert pairs[7].meta["step_error"] == "RuntimeError: cannot take caption 7"
    assert len(kept) == 18 and all(p.meta["seen"] for p in kept)
    assert runner.stats.step_dropped[("raises", "s", "step_error_raises")] == 2
    runner.close()  # a worker's teardown: the threads go, and a later batch gets new ones
    again = [Pair(uid="s/27", source="s", caption="caption 27"), Pair(uid="s/3", source="s", caption="c 3")]
    assert [p.uid for p in runner.run(again)] == ["s/3"]


@pytest.mark.parametrize("threads", [0, -1, 1.5, True, "2"])
def test_decode_check_threads_must_be_a_whole_number(threads):
    with pytest.raises(ValueError, match=r"decode_check\.threads must be a whole number of 1 or more"):
        DecodeCheck(threads=threads)
