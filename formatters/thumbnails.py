"""Small JPEG thumbnails of sample rejects, for the galleries in report.html."""

from __future__ import annotations

import io

from PIL import Image, ImageOps

from vlcurate.formatters.shard_images import rgb_on_white

THUMBNAIL_PX = 128  # longer side
# Never decode more than this for a thumbnail: decompression bombs are among the rejects shown.
MAX_DECODE_PIXELS = 40_000_000


def thumbnail_jpeg(image: bytes) -> bytes | None:
    """The image, EXIF-oriented and shrunk to THUMBNAIL_PX on its longer side, as JPEG bytes; None for
    data PIL cannot decode or an image over MAX_DECODE_PIXELS (checked from the header, before decoding)."""
    try:
        with Image.open(io.BytesIO(image)) as img:
            width, height = img.size
            if width * height > MAX_DECODE_PIXELS:
                return None
            img.draft("RGB", (THUMBNAIL_PX, THUMBNAIL_PX))  # JPEG: decode at a reduced scale
            small = rgb_on_white(ImageOps.exif_transpose(img))
            small.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
            out = io.BytesIO()
            small.save(out, "JPEG", quality=75)
            return out.getvalue()
    except Exception:  # undecodable or truncated data: the reject is shown without a picture
        return None
