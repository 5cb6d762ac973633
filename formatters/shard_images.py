"""The image a kept shard stores: by default every image as JPEG, so one output has one image extension.

Loaders that infer a dataset's fields from its first samples refuse tars whose samples mix `.jpg`,
`.png` and `.webp` members (HF datasets' webdataset builder: "the files in the archive don't share the
same prefix or the same types"). JPEG bytes pass through untouched; other formats are decoded, turned
upright by their EXIF orientation (so the pixels match the recorded width and height, which are after
orientation), flattened onto white where they have alpha, and encoded at JPEG_QUALITY. Encoding is a
pure function of the input bytes (fixed settings, no timestamps), so shards stay byte-identical for any
number of workers. `output.image_format: keep` stores the input's bytes and extension instead.
"""

from __future__ import annotations

import dataclasses
import io
import warnings

from PIL import Image, ImageOps

from vlcurate.formatters.webdataset import EXTENSION_OF_FORMAT

# img2dataset's default (`encode_quality=95` in img2dataset/resizer.py and its CLI), which the web
# datasets vlcurate cleans were mostly written with.
JPEG_QUALITY = 95
WHITE = (255, 255, 255)
# PIL names a camera's multi-picture JPEG "MPO"; its bytes open as a plain JPEG everywhere.
_JPEG_FORMATS = frozenset({"JPEG", "MPO"})
_JPEG_MAGIC = b"\xff\xd8\xff"
# Modes whose ICC profile (if any) describes RGB data, so it still applies after conversion to RGB.
_RGB_MODES = frozenset({"RGB", "RGBA", "RGBX", "P", "PA"})


@dataclasses.dataclass(frozen=True)
class StoredImage:
    data: bytes
    ext: str  # the tar member's extension
    format: str | None  # what `data` is, as PIL names it
    error: str | None = None  # why a re-encode failed (the input's bytes are stored then)


def stored_image(data: bytes, image_format: str | None, reencode: bool = True) -> StoredImage:
    """What the shard stores for image bytes whose format the probe step found (`image_format`; None when
    it did not run). With `reencode`, a JPEG; an image that cannot be decoded (possible only when the
    decode_check step is disabled) keeps its bytes and reports the error rather than failing the run."""
    is_jpeg = image_format in _JPEG_FORMATS or (image_format is None and data[:3] == _JPEG_MAGIC)
    if is_jpeg:
        return StoredImage(data, "jpg", image_format or "JPEG")
    if reencode:
        try:
            return StoredImage(to_jpeg(data), "jpg", "JPEG")
        except Exception as exc:  # a property of this image, not a bug: see the docstring
            error = f"{type(exc).__name__}: {exc}"[:300]
            return StoredImage(data, _extension(image_format), image_format, error)
    return StoredImage(data, _extension(image_format), image_format)


def _extension(image_format: str | None) -> str:
    return EXTENSION_OF_FORMAT.get(image_format or "", "img")


def to_jpeg(data: bytes, quality: int = JPEG_QUALITY) -> bytes:
    """Image bytes of any format PIL decodes as baseline JPEG (the first frame of an animation)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PIL's bomb warning: the max_pixels step decided already
        with Image.open(io.BytesIO(data)) as img:
            icc = img.info.get("icc_profile") if img.mode in _RGB_MODES else None
            rgb = rgb_on_white(ImageOps.exif_transpose(img))
    out = io.BytesIO()
    rgb.save(out, "JPEG", quality=quality, icc_profile=icc)
    return out.getvalue()


def rgb_on_white(img: Image.Image) -> Image.Image:
    """The image as RGB, transparent parts flattened onto white (a plain convert would show whatever
    colour the transparent pixels hold, often black)."""
    has_alpha = img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in img.info
    if not has_alpha:
        return img.convert("RGB")
    rgba = img.convert("RGBA")
    flat = Image.new("RGB", rgba.size, WHITE)
    flat.paste(rgba, mask=rgba.getchannel("A"))
    return flat
