"""Perceptual image hashes for near-duplicate detection: bit strings that stay within a few bits of each
other when an image is re-encoded, resized or slightly cropped, compared by Hamming distance.

- `phash64`, the DCT hash (Zauner, "Implementation and Benchmarking of Perceptual Image Hash Functions",
  2010, section 3.2): the image in grey levels at 32x32, its 2-D DCT-II, the 8x8 lowest frequencies, one
  bit per coefficient: above their median or not. A median split of 64 distinct values sets exactly 32
  bits, so two such hashes are always an even distance apart: odd radii add nothing.
- `dhash64`, the difference hash (Krawetz, "Kind of Like That", 2013): the image in grey levels at 9x8,
  one bit per horizontal neighbour pair: brighter to the right or not.
- `near_dup_hash`, what near-dedup uses (NEAR_DUP_HASH_NAME, NEAR_DUP_HASH_BITS): Zauner's DCT hash on
  luma with 12x12 low frequencies, plus colour. The colour parts are our own extension, chosen by
  bench/image_hash.py (bench/README.md): grey-level hashes split contrast, not colour, so images that
  differ only in colour (or in background tone) hash alike. Bit layout, most significant bit first:

      bits      what                                                    bit set when
      0-143     luma (Y) DCT, 12x12 lowest frequencies, row-major       coefficient > their median (Zauner)
                (row = vertical frequency)
      144-207   Cb DCT, 8x8 lowest frequencies, row-major               coefficient > +8 (chroma dead zone)
      208-271   Cr DCT, the same                                        coefficient > +8
      272-335   mean Y, thermometer: threshold k is 2 + 4k (0-255)      mean > threshold
      336-399   mean Cb, thermometer: threshold k is -126 + 4k          mean > threshold
      400-463   mean Cr, the same                                       mean > threshold

  Y, Cb, Cr are JPEG's (JFIF, ITU-R BT.601 full range) computed in floating point from the 32x32 box
  average of RGB, chroma centred on 0 for grey; the DCT is orthonormal, so coefficients are in grey
  levels (a 32x32 plane of constant v has DC 32 v). Chroma bits are signs with a dead zone instead of a
  median split: a grey or nearly grey image (a flat chroma plane: every coefficient ~0) sets none of them,
  deterministically, where a median of near-zero values would set random bits; and a colour and its
  opposite (red vs blue) set different bits. The thermometer codes make the Hamming distance grow with
  the difference of mean colour (|difference| / 4 levels), which a median split cannot see at all. The
  luma part sets exactly 72 bits, the others any number: distances of the full hash can be odd.

All take a PIL image, any mode and size (alpha is dropped): a draft decode at 1/8 scale
(filters/image_probe.py's decode_check) holds enough pixels, so a hash costs no decode pass of its own.
`hamming_bytes` compares two hashes, `hamming_many` one against many. bench/image_hash.py measures every
hash here on planted near-duplicates (synth/near_duplicates.py) and picks the default hash and radius.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

HASH_BITS = 64
NEAR_DUP_HASH_NAME = "phash-ycc-464"
NEAR_DUP_HASH_BITS = 464
# The smallest radius at which near_dup_hash meets issue 26's bar on bench/image_hash.py's varied images
# (recall >= 95% re-encoded/resized, >= 85% for 5% crops, <= 0.5% false merges): bench/README.md.
NEAR_DUP_RADIUS = 35
_DCT_SIDE, _LOW = 32, 8


def phash64(image: Image.Image) -> int:
    """The 64-bit DCT hash of `image` (module docstring); bit i is coefficient (i // 8, i % 8)."""
    grey = np.asarray(_grey(image, (_DCT_SIDE, _DCT_SIDE)), dtype=np.float64)
    basis = _dct_basis(_DCT_SIDE)
    low = (basis @ grey @ basis.T)[:_LOW, :_LOW].ravel()  # [64]: rows are vertical frequencies
    # Rounded: a coefficient that is exactly 0 (a flat or smooth region) comes out as float noise of
    # either sign, which would set random bits where there is nothing to see.
    low = np.round(low, 6)
    return _bits(low > np.median(low))


def dhash64(image: Image.Image) -> int:
    """The 64-bit difference hash of `image` (module docstring); bit i is row i // 8, pair i % 8."""
    grey = np.asarray(_grey(image, (9, 8)), dtype=np.int16)  # [8 rows, 9 columns]
    return _bits((grey[:, 1:] > grey[:, :-1]).ravel())


def hamming(a: int, b: int) -> int:
    """Bits in which two hashes differ."""
    return (a ^ b).bit_count()


def _grey(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    # Box filtering averages every source pixel into the small grid, so the hash sees the whole image,
    # whatever its size (a draft decode or the original).
    return image.convert("L").resize(size, Image.Resampling.BOX)


@functools.cache
def _dct_basis(n: int) -> np.ndarray:
    """[n, n] DCT-II basis, unnormalized (a hash compares coefficients with their median: scale is moot)."""
    k, x = np.arange(n)[:, None], np.arange(n)[None, :]
    return np.cos(np.pi * (2 * x + 1) * k / (2 * n))


def _bits(flags: np.ndarray) -> int:
    """64 booleans -> an int, the first flag the most significant bit."""
    return int.from_bytes(np.packbits(flags.astype(np.uint8)).tobytes(), "big")


# ---------------------------------------------------------------------------------------------- colour


def near_dup_hash(image: Image.Image) -> bytes:
    """The near-dedup hash of `image`: 58 bytes, the layout in the module docstring."""
    return ycc_hash(image, luma_low=12, mean=True)


def hamming_bytes(a: bytes, b: bytes) -> int:
    """Bits in which two equal-length hashes differ."""
    if len(a) != len(b):
        raise ValueError(f"hashes of different lengths: {len(a)} and {len(b)} bytes")
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count()


def hamming_many(one: bytes, many: np.ndarray) -> np.ndarray:
    """Distances from one hash to each row of `many` ([n, len(one)] uint8, e.g. np.frombuffer of joined
    hashes reshaped), vectorized: [n] int."""
    xor = np.bitwise_xor(many, np.frombuffer(one, dtype=np.uint8)[None, :])
    return np.bitwise_count(xor).sum(axis=1, dtype=np.int64)


_CHROMA_DEAD_ZONE = 8.0  # grey levels of an orthonormal coefficient (module docstring)
_MEAN_STEP = 4.0
_Y_THRESHOLDS = np.arange(64) * _MEAN_STEP + _MEAN_STEP / 2  # 2, 6, ..., 254
_C_THRESHOLDS = _Y_THRESHOLDS - 128  # -126, ..., 126
# RGB -> Y, Cb, Cr (JFIF), chroma without JPEG's +128 offset: grey is 0.
_RGB_TO_YCC = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])


def ycc_hash(image: Image.Image, luma_low: int, mean: bool) -> bytes:
    """near_dup_hash's construction with `luma_low` x `luma_low` luma frequencies, with or without the
    mean-colour thermometers (bench/image_hash.py measures the variants)."""
    rgb = image.convert("RGB").resize((_DCT_SIDE, _DCT_SIDE), Image.Resampling.BOX)
    ycc = np.asarray(rgb, dtype=np.float64) @ _RGB_TO_YCC.T  # [32, 32, 3]
    planes = np.moveaxis(ycc, 2, 0)  # [3, 32, 32]
    basis = _dct_basis_orthonormal(_DCT_SIDE)
    luma = basis[:luma_low] @ planes[0] @ basis[:luma_low].T
    chroma = basis[:_LOW] @ planes[1:] @ basis[:_LOW].T  # [2, 8, 8]
    # Rounded as in phash64: an exact 0 (flat or smooth) must not come out as float noise of either sign.
    luma, chroma = np.round(luma, 6).ravel(), np.round(chroma, 6).ravel()
    parts = [luma > np.median(luma), chroma > _CHROMA_DEAD_ZONE]
    if mean:
        y, cb, cr = ycc.mean(axis=(0, 1))
        parts += [y > _Y_THRESHOLDS, cb > _C_THRESHOLDS, cr > _C_THRESHOLDS]
    return np.packbits(np.concatenate(parts)).tobytes()


@functools.cache
def _dct_basis_orthonormal(n: int) -> np.ndarray:
    """[n, n] orthonormal DCT-II basis: coefficients in the units of the pixels."""
    basis = _dct_basis(n) * np.sqrt(2 / n)
    basis[0] /= np.sqrt(2)
    return basis
