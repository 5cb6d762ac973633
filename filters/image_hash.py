"""Perceptual image hashes for near-duplicate detection: 64-bit integers that stay within a few bits of
each other when an image is re-encoded, resized or slightly cropped, compared by Hamming distance.

- `phash64`, the DCT hash (Zauner, "Implementation and Benchmarking of Perceptual Image Hash Functions",
  2010, section 3.2): the image in grey levels at 32x32, its 2-D DCT-II, the 8x8 lowest frequencies, one
  bit per coefficient: above their median or not.
- `dhash64`, the difference hash (Krawetz, "Kind of Like That", 2013): the image in grey levels at 9x8,
  one bit per horizontal neighbour pair: brighter to the right or not.

Both take a PIL image, any mode and size: a draft decode at 1/8 scale (filters/image_probe.py's
decode_check) holds enough pixels, so a hash costs no decode pass of its own. bench/image_hash.py measures
them on planted near-duplicates of the synthetic scenes.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

HASH_BITS = 64
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
