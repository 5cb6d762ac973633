"""filters/image_hash.py: the bit layout of the perceptual hashes on images whose hash is known exactly,
and their robustness to a resize and a re-encode of a synthetic scene."""

from __future__ import annotations

import io
import random

import numpy as np
from PIL import Image

from vlcurate.filters.image_hash import dhash64, hamming, phash64
from vlcurate.model.scenes import random_scene, render

ALL_ONES = (1 << 64) - 1


def _gradient(width: int, height: int, rising: bool) -> Image.Image:
    row = np.linspace(0, 255, width) if rising else np.linspace(255, 0, width)
    return Image.fromarray(np.tile(row, (height, 1)).astype(np.uint8), "L")


def test_dhash_of_horizontal_gradients_is_all_ones_or_all_zeros():
    assert dhash64(_gradient(90, 80, rising=True)) == ALL_ONES
    assert dhash64(_gradient(90, 80, rising=False)) == 0
    # Any mode and size: an RGB copy at another size hashes the same.
    assert dhash64(_gradient(450, 400, rising=True).convert("RGB")) == ALL_ONES


def test_phash_of_a_flat_image_sets_only_the_dc_bit():
    # Every coefficient but the mean's (DC, the most significant bit) is 0, their median too.
    assert phash64(Image.new("RGB", (200, 100), (90, 120, 30))) == 1 << 63


def _step(dark_left: bool) -> Image.Image:
    half = np.zeros((64, 32), dtype=np.uint8), np.full((64, 32), 255, dtype=np.uint8)
    return Image.fromarray(np.hstack(half if dark_left else half[::-1]), "L")


def test_phash_of_a_vertical_edge_sets_the_odd_horizontal_frequencies_by_their_sign():
    # Of the 64 low frequencies only DC and the odd horizontal ones (bits 1, 3, 5, 7 of the first row)
    # are non-zero, and the median of the 64 is 0. A step's odd coefficients alternate in sign: k = 3 and
    # 7 are positive for dark-then-bright, k = 1 and 5 for bright-then-dark.
    def bits(*ks: int) -> int:
        return sum(1 << (63 - k) for k in ks)

    assert phash64(_step(dark_left=True)) == bits(0, 3, 7)
    assert phash64(_step(dark_left=False)) == bits(0, 1, 5)


def test_hamming_counts_differing_bits():
    assert hamming(0, ALL_ONES) == 64
    assert hamming(0b1011, 0b0110) == 3


def test_a_resized_and_re_encoded_scene_stays_near_and_another_scene_does_not():
    rng = random.Random(5)
    one, other = random_scene(rng), random_scene(rng)
    image = render(one, 480, 360)
    buffer = io.BytesIO()
    image.resize((240, 180), Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=60)
    copy = Image.open(io.BytesIO(buffer.getvalue()))
    for fn in (phash64, dhash64):
        assert hamming(fn(image), fn(copy)) <= 6, fn.__name__
        assert hamming(fn(image), fn(render(other, 480, 360))) > 6, fn.__name__
