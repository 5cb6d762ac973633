"""Thumbnails of sample rejects for report.html."""

import io

from PIL import Image

from vlcurate.formatters.thumbnails import THUMBNAIL_PX, thumbnail_jpeg


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **kw)
    return out.getvalue()


def test_a_jpeg_shrinks_to_128_px_on_its_longer_side_keeping_its_shape():
    thumb = Image.open(io.BytesIO(thumbnail_jpeg(_encode(Image.new("RGB", (800, 400), "red"), "JPEG"))))
    assert (thumb.format, thumb.size) == ("JPEG", (THUMBNAIL_PX, 64))
    assert thumb.getpixel((64, 32))[0] > 240  # still red


def test_the_exif_orientation_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: shown turned 90 degrees
    data = _encode(Image.new("RGB", (300, 100), "blue"), "JPEG", exif=exif.tobytes())
    assert Image.open(io.BytesIO(thumbnail_jpeg(data))).size == (43, THUMBNAIL_PX)


def test_png_with_alpha_and_palette_images_become_rgb_jpegs():
    for img in (Image.new("RGBA", (50, 50), (0, 255, 0, 0)), Image.new("P", (60, 30))):
        thumb = Image.open(io.BytesIO(thumbnail_jpeg(_encode(img, "PNG"))))
        assert (thumb.mode, thumb.size) == ("RGB", img.size)  # never enlarged


def test_undecodable_truncated_and_oversized_images_give_none():
    jpeg = _encode(Image.new("RGB", (200, 200), "white"), "JPEG")
    assert thumbnail_jpeg(b"not an image") is None
    assert thumbnail_jpeg(jpeg[: len(jpeg) // 2]) is None
    # 7000 x 7000 = 49 MP: refused from the header, before any decoding
    assert thumbnail_jpeg(_encode(Image.new("1", (7000, 7000)), "PNG")) is None
