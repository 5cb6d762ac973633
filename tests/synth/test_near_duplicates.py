"""synth/near_duplicates.py: varied originals and planted copies are pure functions of their seed, every
original gets exactly one copy of each kind, and every copy decodes at exactly its planned size."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from vlcurate.synth.near_duplicates import (
    KINDS,
    PlantedCopy,
    crop_box,
    original_bytes,
    plant_near_duplicates,
    varied_image,
    varied_images,
)


def _size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        image.load()  # decodes fully
        assert image.format == "JPEG"
        return image.size


def test_varied_images_are_deterministic_and_distinct():
    one, again = varied_images(6, seed=3), varied_images(6, seed=3)
    assert [i.tobytes() for i in one] == [i.tobytes() for i in again]
    assert len({i.tobytes() for i in one}) == 6
    assert varied_image(4, 0).tobytes() != one[0].tobytes()  # another seed, another image
    assert varied_image(3, 5).tobytes() == one[5].tobytes()  # (seed, index) alone decides


def test_varied_image_sizes():
    for index in range(20):
        image = varied_image(1, index)
        width, height = image.size
        assert image.mode == "RGB"
        assert 256 <= width <= 512 and 256 <= height <= 512
        assert max(width, height) <= 2 * min(width, height)
    assert varied_image(1, 0, size=(97, 61)).size == (97, 61)


def test_one_copy_of_each_kind_per_original_in_order():
    originals = varied_images(3, seed=0)
    copies = plant_near_duplicates(originals, seed=7)
    assert len(copies) == 3 * len(KINDS) == 24
    assert [(c.original_index, c.kind) for c in copies] == [(i, k) for i in range(3) for k in KINDS]
    assert all(isinstance(c, PlantedCopy) for c in copies)
    assert [c.kind for c in plant_near_duplicates(originals, 7, kinds=("crop_5pct",))] == ["crop_5pct"] * 3
    with pytest.raises(ValueError, match="unknown kinds"):
        plant_near_duplicates(originals, 7, kinds=("mirror",))


def test_planting_is_deterministic_and_chunkable():
    originals = varied_images(4, seed=2)
    once = plant_near_duplicates(originals, seed=11)
    assert once == plant_near_duplicates(originals, seed=11)
    # Planted in two chunks, numbered from first_index: the same copies.
    chunked = plant_near_duplicates(originals[:2], 11) + plant_near_duplicates(
        originals[2:], 11, first_index=2
    )
    assert chunked == once
    # The seed draws the qualities of the resized, cropped and re-captioned copies, nothing else.
    other = {(c.original_index, c.kind): c.image for c in plant_near_duplicates(originals, seed=12)}
    for copy in once:
        if copy.kind in ("reencode_q50", "reencode_q75", "caption_same_bytes"):
            assert other[copy.original_index, copy.kind] == copy.image


def test_copies_decode_at_their_exact_sizes():
    image = varied_image(0, 0, size=(301, 257))
    copies = {c.kind: c.image for c in plant_near_duplicates([image], seed=0)}
    assert copies["caption_same_bytes"] == original_bytes(image)
    assert copies["caption_reencoded"] != copies["caption_same_bytes"]
    assert {kind: _size(data) for kind, data in copies.items()} == {
        "reencode_q50": (301, 257),
        "reencode_q75": (301, 257),
        "resize_half": (150, 128),
        "resize_0_75": (226, 193),  # round(225.75), round(192.75)
        "crop_5pct": (285, 245),  # 8 px off each end of the width (round(7.525)), 6 of the height
        "crop_10pct": (271, 231),  # 15 and 13 px off each end
        "caption_same_bytes": (301, 257),
        "caption_reencoded": (301, 257),
    }
    assert crop_box(301, 257, 0.05) == (8, 6, 293, 251)
