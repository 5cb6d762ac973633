"""Near-duplicate images with ground truth, for measuring a perceptual hash (filters/image_hash.py) and the
near-dedup step: varied, photo-like distinct originals, and copies of them planted the way images get
re-posted (re-encoded, resized, cropped, or the same picture under another caption).

`varied_image` draws one distinct original from (seed, index) alone. The recipe (our own, not a published
image model) layers what makes photographs unlike each other and unlike the shapes domain of
model/scenes.py:

    1/f colour field   three fields with amplitude spectrum 1/f^beta (beta 0.8-1.6: smooth to grainy, as
                       natural images are, Field 1987), mixed by a random colour matrix around a random
                       mean colour, contrast 6-70 grey levels
    gradient           a linear ramp in a random direction (a sky, a lit wall), up to +-90 levels
    blobs              0-4 soft Gaussian blobs of random colour and size
    shapes             0-6 filled ellipses, rectangles and triangles of random colour
    greyscale          10% of images lose their colour (so a colour-aware hash is tested on grey photos)

`plant_near_duplicates` takes distinct originals and returns, for every original, one copy per kind:

    kind                 image bytes                                                      size
    reencode_q50         JPEG quality 50 of the decoded original                          same
    reencode_q75         JPEG quality 75 of the decoded original                          same
    resize_half          bicubic to half each side, JPEG quality 75-90 (seeded)           w // 2, h // 2
    resize_0_75          bicubic to 3/4 each side, JPEG quality 75-90 (seeded)            round(3w/4), round(3h/4)
    crop_5pct            5% of each side's length cut, half from each end, JPEG 75-90     w - 2 round(w/40), ...
    crop_10pct           10% cut the same way (for information: beyond the issue's bar)   w - 2 round(w/20), ...
    caption_same_bytes   the original's bytes, unchanged: the same image, another caption same
    caption_reencoded    JPEG quality 70-95 (seeded) of the decoded original, another    same
                         caption (the caption is the pipeline's business, not planted here)

The original's bytes are `original_bytes(image)` (JPEG quality 90, deterministic), and every copy is made
from those bytes decoded, as a re-poster would: a copy carries the original's compression loss and its
own. Everything is a pure function of its arguments: the same originals and seed give identical bytes.
The transforms (`jpeg`, `resized`, `cropped`) also make the near_duplicate copies of `vlcurate synth`
(images.near_copy).
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

ORIGINAL_QUALITY = 90
KINDS: tuple[str, ...] = (
    "reencode_q50",
    "reencode_q75",
    "resize_half",
    "resize_0_75",
    "crop_5pct",
    "crop_10pct",
    "caption_same_bytes",
    "caption_reencoded",
)
_CROP_SHARE = {"crop_5pct": 0.05, "crop_10pct": 0.10}
_SIDE = (256, 512)  # varied_image's default side range
_GREY_SHARE = 0.10


@dataclasses.dataclass(frozen=True)
class PlantedCopy:
    original_index: int  # which original (its position in the list given to plant_near_duplicates)
    kind: str  # one of KINDS
    image: bytes  # encoded image (JPEG)


# ---------------------------------------------------------------------------------------------- originals


def varied_image(seed: int, index: int, size: tuple[int, int] | None = None) -> Image.Image:
    """One photo-like RGB image, a pure function of (seed, index) and `size` (width, height; drawn from
    (seed, index) when None: each side 256-512 px, aspect at most 2)."""
    rng = np.random.default_rng([seed, index, 0x5EED])
    if size is None:
        while True:
            width, height = (int(v) for v in rng.integers(_SIDE[0], _SIDE[1] + 1, size=2))
            if max(width, height) <= 2 * min(width, height):
                break
    else:
        width, height = size
    pixels = _colour_field(rng, width, height) + _gradient(rng, width, height)
    pixels += _blobs(rng, width, height)
    image = Image.fromarray(np.clip(pixels, 0, 255).round().astype(np.uint8), "RGB")
    _shapes(rng, image)
    if rng.random() < _GREY_SHARE:
        image = image.convert("L").convert("RGB")
    return image


def varied_images(n: int, seed: int) -> list[Image.Image]:
    """`varied_image(seed, i)` for i in range(n)."""
    return [varied_image(seed, i) for i in range(n)]


def _colour_field(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """[h, w, 3] float32: 1/f^beta fields, made at half size (the top octave adds little but cost) and
    resized up, mixed into colour around a random mean: mostly brightness, some chroma, as in photos."""
    beta = rng.uniform(0.8, 1.6)
    h, w = (height + 1) // 2, (width + 1) // 2
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.hypot(fx, fy)
    f[0, 0] = 1.0
    amplitude = f**-beta
    amplitude[0, 0] = 0.0  # zero mean: the mean colour is set below
    spectrum = rng.standard_normal((3, *f.shape)) + 1j * rng.standard_normal((3, *f.shape))
    fields = np.fft.irfft2(spectrum * amplitude, s=(h, w), axes=(1, 2)).astype(np.float32)
    fields /= fields.std(axis=(1, 2), keepdims=True)
    # Row c: how channel c takes the three fields. Column 0, shared by all channels, is brightness.
    mix = rng.normal(0.0, rng.uniform(0.1, 0.8), (3, 3))
    mix[:, 0] += 1.0
    contrast = np.exp(rng.uniform(np.log(6), np.log(70)))
    mean = rng.uniform(40, 215, 3)
    coloured = np.einsum("cd,dhw->chw", (contrast * mix).astype(np.float32), fields)
    up = [
        np.asarray(Image.fromarray(c, "F").resize((width, height), Image.Resampling.BILINEAR))
        for c in coloured
    ]
    return np.stack(up, axis=2) + mean.astype(np.float32)


def _gradient(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """[h, w, 3] float32: a linear ramp in a random direction, its own colour per channel."""
    angle = rng.uniform(0, 2 * np.pi)
    x = np.linspace(-0.5, 0.5, width, dtype=np.float32)[None, :]
    y = np.linspace(-0.5, 0.5, height, dtype=np.float32)[:, None]
    ramp = np.cos(angle) * x + np.sin(angle) * y  # [h, w], -0.7..0.7
    return ramp[:, :, None] * rng.uniform(-90, 90, 3).astype(np.float32)


def _blobs(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """[h, w, 3] float32: soft Gaussian blobs (separable: an outer product per blob)."""
    out = np.zeros((height, width, 3), dtype=np.float32)
    x = np.arange(width, dtype=np.float32)
    y = np.arange(height, dtype=np.float32)
    for _ in range(rng.integers(0, 5)):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        sigma = rng.uniform(0.05, 0.3) * min(width, height)
        weight = np.outer(
            np.exp(-((y - cy) ** 2) / (2 * sigma**2)), np.exp(-((x - cx) ** 2) / (2 * sigma**2))
        )
        out += weight[:, :, None] * rng.uniform(-100, 100, 3).astype(np.float32)
    return out


def _shapes(rng: np.random.Generator, image: Image.Image) -> None:
    draw = ImageDraw.Draw(image)
    width, height = image.size
    for _ in range(rng.integers(0, 7)):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        rx, ry = rng.uniform(0.03, 0.25, 2) * (width, height)
        kind = rng.integers(0, 3)
        if kind == 0:
            draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=colour)
        elif kind == 1:
            draw.rectangle((cx - rx, cy - ry, cx + rx, cy + ry), fill=colour)
        else:
            angles = rng.uniform(0, 2 * np.pi) + np.array([0, 2.1, 4.2])
            draw.polygon([(cx + rx * np.cos(a), cy + ry * np.sin(a)) for a in angles.tolist()], fill=colour)


# ---------------------------------------------------------------------------------------------- copies


def original_bytes(image: Image.Image) -> bytes:
    """How an original is stored: JPEG at quality 90 (deterministic for the same pixels)."""
    return jpeg(image, ORIGINAL_QUALITY)


def jpeg(image: Image.Image, quality: int) -> bytes:
    """The image as a JPEG at `quality` (deterministic for the same pixels)."""
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def resized(image: Image.Image, scale: float) -> Image.Image:
    """The image scaled to `scale` of each side (rounded), bicubic."""
    width, height = image.size
    return image.resize((round(width * scale), round(height * scale)), Image.Resampling.BICUBIC)


def cropped(image: Image.Image, share: float) -> Image.Image:
    """The centred crop that cuts `share` of each side's length (crop_box)."""
    return image.crop(crop_box(*image.size, share))


def crop_box(width: int, height: int, share: float) -> tuple[int, int, int, int]:
    """The centred crop that cuts `share` of each side's length, half from each end."""
    dx, dy = round(width * share / 2), round(height * share / 2)
    return dx, dy, width - dx, height - dy


def plant_near_duplicates(
    originals: Sequence[Image.Image], seed: int, kinds: Sequence[str] = KINDS, first_index: int = 0
) -> list[PlantedCopy]:
    """One copy of every original per kind (module docstring's table), ordered by original, then by
    `kinds`. Pure: the same originals, seed and kinds give identical bytes. The originals are numbered
    from `first_index` (in `original_index`, and in what the seed draws for each), so a long list planted
    in chunks gives the same copies as planted at once."""
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown kinds {sorted(unknown)}; known: {', '.join(KINDS)}")
    copies = []
    for index, image in enumerate(originals, start=first_index):
        stored = original_bytes(image.convert("RGB"))
        decoded = Image.open(io.BytesIO(stored)).convert("RGB")
        rng = np.random.default_rng([seed, index, 0xC0B1])
        qualities = {kind: int(q) for kind, q in zip(KINDS, rng.integers(75, 91, len(KINDS)))}
        for kind in kinds:
            copies.append(PlantedCopy(index, kind, _copy(kind, stored, decoded, qualities[kind], rng)))
    return copies


def _copy(kind: str, stored: bytes, decoded: Image.Image, quality: int, rng: np.random.Generator) -> bytes:
    width, height = decoded.size
    if kind == "reencode_q50":
        return jpeg(decoded, 50)
    if kind == "reencode_q75":
        return jpeg(decoded, 75)
    if kind == "resize_half":
        return jpeg(decoded.resize((width // 2, height // 2), Image.Resampling.BICUBIC), quality)
    if kind == "resize_0_75":
        return jpeg(resized(decoded, 0.75), quality)
    if kind in _CROP_SHARE:
        return jpeg(cropped(decoded, _CROP_SHARE[kind]), quality)
    if kind == "caption_same_bytes":
        return stored
    assert kind == "caption_reencoded", kind
    return jpeg(decoded, int(rng.integers(70, 96)))
