"""What a record's image size means: EXIF orientation and PIL's pixel cap.

`Pair.width`/`height` are the image's size after EXIF orientation, and images above PIL's
decompression-bomb cap are never decoded. The steps that set and filter them (filters/image_probe.py,
filters/image_size.py) and the check that re-reads written images (formatters/check_images.py) share these
definitions, so both read an image the same way.
"""

from __future__ import annotations

from PIL import Image

# PIL's decompression-bomb limit, Image.MAX_IMAGE_PIXELS: 1024 * 1024 * 1024 // 4 // 3 (a 1 GiB
# budget for 4-byte pixels, over 3), which PIL warns above and refuses at twice that.
PIL_MAX_IMAGE_PIXELS = 89_478_485

# EXIF orientations 5-8 rotate by 90 or 270 degrees, swapping width and height.
ROTATED_ORIENTATIONS = {5, 6, 7, 8}
EXIF_ORIENTATION = 0x0112  # the tag


def pil_orientation(img: Image.Image) -> int:
    """The EXIF orientation of an opened image (1 when absent or unreadable)."""
    # Read EXIF from the header chunks only: PIL's PNG getexif() would decode the whole image to find
    # a late eXIf chunk (the spec puts it before the pixel data anyway).
    raw = img.info.get("exif")
    if not raw:
        return 1
    exif = Image.Exif()
    exif.load(raw)
    value = exif.get(EXIF_ORIENTATION, 1)
    return value if isinstance(value, int) else 1
