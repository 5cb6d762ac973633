"""The image a kept shard stores: JPEG bytes untouched, other formats re-encoded as JPEG, or kept as they are."""

import io

import pytest
from PIL import Image

from vlcurate.formatters.shard_images import JPEG_QUALITY, stored_image, to_jpeg


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **kw)
    return out.getvalue()


def _open(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def test_jpeg_bytes_are_stored_as_they_are():
    jpeg = _encode(Image.new("RGB", (40, 30), "red"), "JPEG", quality=70)
    for fmt in ("JPEG", "MPO", None):  # None: no probe ran, the bytes' magic says JPEG
        stored = stored_image(jpeg, fmt)
        assert (stored.data, stored.ext, stored.error) == (jpeg, "jpg", None)
    assert stored_image(jpeg, "JPEG", reencode=False).data is jpeg


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_other_formats_become_jpeg_at_quality_95(fmt):
    img = Image.new("RGB", (64, 48), (200, 30, 30))
    stored = stored_image(_encode(img, fmt), fmt)
    out = _open(stored.data)
    assert (stored.ext, stored.format, stored.error) == ("jpg", "JPEG", None)
    assert (out.format, out.mode, out.size) == ("JPEG", "RGB", (64, 48))
    # The quantization tables say which quality encoded a JPEG: the same as PIL's at 95.
    reference = _open(_encode(img, "JPEG", quality=95))
    assert JPEG_QUALITY == 95 and out.quantization == reference.quantization


def test_reencoding_is_deterministic():
    data = _encode(Image.effect_noise((97, 61), 40).convert("RGB"), "PNG")
    assert to_jpeg(data) == to_jpeg(data) == stored_image(data, "PNG").data


def test_alpha_is_flattened_onto_white():
    rgba = Image.new("RGBA", (20, 20), (0, 0, 255, 0))  # fully transparent blue
    rgba.paste((255, 0, 0, 255), (10, 0, 20, 20))  # opaque red right half
    out = _open(to_jpeg(_encode(rgba, "PNG"))).convert("RGB")
    left, right = out.getpixel((2, 10)), out.getpixel((17, 10))
    assert min(left) >= 250  # white, not the hidden blue nor black
    assert right[0] >= 240 and max(right[1:]) <= 15
    palette = Image.new("P", (8, 8), 0)
    palette.info["transparency"] = 0  # a GIF/PNG palette entry marked transparent
    assert min(_open(to_jpeg(_encode(palette, "PNG"))).convert("RGB").getpixel((4, 4))) >= 250


def test_exif_orientation_is_applied_so_pixels_match_the_recorded_size():
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: shown turned 90 degrees, as the probe reports its size
    data = _encode(Image.new("RGB", (300, 100), "green"), "PNG", exif=exif.tobytes())
    out = _open(stored_image(data, "PNG").data)
    assert out.size == (100, 300) and not out.getexif().get(0x0112)


def test_keep_stores_the_input_bytes_and_extension():
    png = _encode(Image.new("RGB", (10, 10)), "PNG")
    webp = _encode(Image.new("RGB", (10, 10)), "WEBP")
    kept = stored_image(png, "PNG", reencode=False)
    assert (kept.data, kept.ext, kept.format) == (png, "png", "PNG")
    assert stored_image(webp, "WEBP", reencode=False).ext == "webp"


def test_an_image_that_does_not_decode_keeps_its_bytes_and_says_why():
    # Only possible with decode_check disabled: the run goes on, the .json member records the error.
    broken = _encode(Image.new("RGB", (50, 50)), "PNG")[:60]
    stored = stored_image(broken, "PNG")
    assert (stored.data, stored.ext, stored.format) == (broken, "png", "PNG")
    assert stored.error and stored.error.startswith(("OSError", "SyntaxError", "ValueError"))
