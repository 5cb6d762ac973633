"""filters/image_hash.py: the bit layout of the perceptual hashes on images whose hash is known exactly,
their robustness to a resize and a re-encode of a synthetic scene, and the Hamming distances."""

from __future__ import annotations

import dataclasses
import io
import random

import numpy as np
import pytest
from PIL import Image

from vlcurate.filters.image_hash import (
    NEAR_DUP_HASH_BITS,
    NEAR_DUP_HASH_NAME,
    dhash64,
    hamming,
    hamming_bytes,
    hamming_many,
    near_dup_hash,
    phash64,
)
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


# ---------------------------------------------------------------------------------------------- near_dup_hash
# Layout (module docstring): Y DCT 12x12 [0, 144), Cb 8x8 [144, 208), Cr 8x8 [208, 272), then thermometers
# of mean Y [272, 336) (thresholds 2 + 4k), mean Cb [336, 400) and mean Cr [400, 464) (-126 + 4k).
Y, CB, CR, MEAN_Y, MEAN_CB, MEAN_CR = 0, 144, 208, 272, 336, 400


def _hash_of(*ranges: range | int) -> bytes:
    """The 464-bit hash whose set bits are exactly those given."""
    flags = np.zeros(NEAR_DUP_HASH_BITS, dtype=np.uint8)
    for bits in ranges:
        flags[bits if isinstance(bits, int) else list(bits)] = 1
    return np.packbits(flags).tobytes()


def _thermometer(start: int, count: int) -> range:
    return range(start, start + count)


def test_near_dup_hash_name_and_length():
    assert (NEAR_DUP_HASH_NAME, NEAR_DUP_HASH_BITS) == ("phash-ycc-464", 464)
    assert len(near_dup_hash(Image.new("RGB", (64, 64)))) == 58


def test_near_dup_hash_of_flat_grey_sets_the_luma_dc_bit_and_half_of_each_thermometer():
    # Luma: only DC is non-zero, the median is 0. Chroma is exactly 0 everywhere: no chroma bit (the
    # dead zone), and the mean Cb = Cr = 0 passes thresholds -126..-2: 32 each. Mean Y 128: 2..126, 32.
    expected = _hash_of(Y, _thermometer(MEAN_Y, 32), _thermometer(MEAN_CB, 32), _thermometer(MEAN_CR, 32))
    assert near_dup_hash(Image.new("RGB", (200, 100), (128, 128, 128))) == expected
    # Any mode and size: the same grey as "L", or a draft-sized copy.
    assert near_dup_hash(Image.new("L", (64, 70), 128)) == expected


def test_near_dup_hash_of_a_vertical_edge():
    # As phash64's test: DC and the odd horizontal frequencies of the first row are non-zero; dark-then-
    # bright sets k = 3, 7, 11, bright-then-dark k = 1, 5, 9. Grey: no chroma bit; mean Y 127.5: 32.
    grey = (_thermometer(MEAN_Y, 32), _thermometer(MEAN_CB, 32), _thermometer(MEAN_CR, 32))
    assert near_dup_hash(_step(dark_left=True)) == _hash_of(0, 3, 7, 11, *grey)
    assert near_dup_hash(_step(dark_left=False)) == _hash_of(0, 1, 5, 9, *grey)


def test_pure_red_and_pure_blue_differ_in_the_chroma_bits():
    # Red: Y 76.2, Cb -43.0, Cr +127.5; blue: Y 29.1, Cb +127.5, Cr -20.7. Luma alone (flat: DC) is alike.
    red = near_dup_hash(Image.new("RGB", (96, 64), (255, 0, 0)))
    blue = near_dup_hash(Image.new("RGB", (96, 64), (0, 0, 255)))
    assert red == _hash_of(
        Y, CR, _thermometer(MEAN_Y, 19), _thermometer(MEAN_CB, 21), _thermometer(MEAN_CR, 64)
    )
    assert blue == _hash_of(
        Y, CB, _thermometer(MEAN_Y, 7), _thermometer(MEAN_CB, 64), _thermometer(MEAN_CR, 27)
    )
    assert hamming_bytes(red, blue) == 2 + (19 - 7) + (64 - 21) + (64 - 27)
    # phash64 sees only grey levels: both are flat, both hash the same.
    assert phash64(Image.new("RGB", (96, 64), (255, 0, 0))) == phash64(
        Image.new("RGB", (96, 64), (0, 0, 255))
    )


def test_hamming_bytes_and_hamming_many():
    zeros, ones = bytes(58), b"\xff" * 58
    assert hamming_bytes(zeros, ones) == 464
    assert hamming_bytes(b"\x0b", b"\x06") == 3
    assert hamming_bytes(b"\x80\x00", b"\x00\x01") == 2
    with pytest.raises(ValueError, match="different lengths"):
        hamming_bytes(b"\x00", b"\x00\x00")
    rng = np.random.default_rng(0)
    many = rng.integers(0, 256, (50, 58), dtype=np.uint8)
    one = many[7].tobytes()
    distances = hamming_many(one, many)
    assert distances.tolist() == [hamming_bytes(one, row.tobytes()) for row in many]
    assert distances[7] == 0


def test_near_dup_hash_keeps_a_resized_re_encoded_scene_near_and_another_colour_far():
    rng = random.Random(5)
    one = random_scene(rng)
    image = render(one, 480, 360)
    buffer = io.BytesIO()
    image.resize((240, 180), Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=60)
    copy = Image.open(io.BytesIO(buffer.getvalue()))
    assert hamming_bytes(near_dup_hash(image), near_dup_hash(copy)) == 14  # NEAR_DUP_RADIUS is 35
    # The same scene with every shape in another colour: far, though its grey levels may be alike.
    recoloured = dataclasses.replace(
        one,
        shapes=tuple(
            dataclasses.replace(s, color="white" if s.color != "white" else "black") for s in one.shapes
        ),
    )
    assert hamming_bytes(near_dup_hash(image), near_dup_hash(render(recoloured, 480, 360))) > 30
