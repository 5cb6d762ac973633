"""check_image: every image a checked output references, fully decoded; one planted defect at a time."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageFile

from vlcurate.formatters.check_images import check_image, check_image_size


def encode(fmt: str, size: tuple[int, int] = (64, 48), exif_orientation: int | None = None, **kw) -> bytes:
    img = Image.effect_noise(size, 60).convert("RGB")
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        kw["exif"] = exif.tobytes()
    out = io.BytesIO()
    img.save(out, fmt, **kw)
    return out.getvalue()


def reason(data: bytes | None) -> str | None:
    problem = check_image(data)
    return None if problem is None else problem.reason


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_whole_images_pass_with_their_size(fmt):
    assert check_image_size(encode(fmt, (64, 48))) == (None, (64, 48))


def test_size_is_after_exif_orientation_as_clean_records_it():
    assert check_image_size(encode("JPEG", (64, 48), exif_orientation=6)) == (None, (48, 64))
    assert check_image_size(encode("JPEG", (64, 48), exif_orientation=3)) == (None, (64, 48))


def test_missing_image():
    assert reason(None) == "image_missing"


@pytest.mark.parametrize("data", [b"", b"\x00garbage" * 200, b"GIF89a" + b"\x13" * 300])
def test_garbage_is_undecodable(data):
    assert reason(data) == "image_undecodable"


def test_image_overwritten_with_garbage_is_undecodable():
    data = encode("PNG")
    assert reason(bytes(b ^ 0x5A for b in data)) == "image_undecodable"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "TIFF"])
@pytest.mark.parametrize("keep", [0.9, 0.5])
def test_cut_files_are_truncated(fmt, keep):
    data = encode(fmt, (96, 64))
    assert reason(data[: int(len(data) * keep)]) == "image_truncated"


def test_progressive_jpeg_cut_is_truncated():
    data = encode("JPEG", (96, 64), progressive=True)
    assert reason(data[: len(data) // 2]) == "image_truncated"


def test_scrambled_png_stream_is_undecodable_not_truncated():
    data = bytearray(encode("PNG", (96, 64)))
    for i in range(len(data) // 3, len(data) // 3 + 40):
        data[i] ^= 0xA5
    assert reason(bytes(data)) == "image_undecodable"


def test_too_many_pixels_is_not_decoded():
    data = encode("PNG", (50, 40))
    assert check_image(data, max_pixels=1999).reason == "too_many_pixels"
    assert check_image(data, max_pixels=2000) is None


def test_refuses_to_run_when_truncated_images_would_load(monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(RuntimeError, match="LOAD_TRUNCATED_IMAGES"):
        check_image(encode("JPEG"))
