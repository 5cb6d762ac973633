"""Pixel boxes and quads to Qwen-VL's [0, 1000) strings."""

from __future__ import annotations

import pytest

from vlcurate.formatters.boxes import (
    BadImageSize,
    BoxError,
    DegenerateBox,
    box_text,
    boxes_text,
    norm_coord,
    normalize_box,
    normalize_quad,
    quad_text,
    ref_text,
)


@pytest.mark.parametrize(
    ("x", "size", "expected"),
    [
        (0, 640, 0),
        (640, 640, 999),  # x = W is clamped into [0, 1000)
        (700, 640, 999),
        (-5, 640, 0),
        (-0.0001, 640, 0),
        (320, 640, 500),
        (639, 640, 998),  # int() truncates: 998.4375
        (1, 3, 333),
        (1e308, 640, 999),  # no OverflowError on absurd input
    ],
)
def test_norm_coord(x, size, expected):
    assert norm_coord(x, size) == expected


def test_box_text_exact_string():
    assert box_text([64, 48, 320, 240], 640, 480) == "<box>(100,100),(500,500)</box>"


def test_swapped_corners_are_reordered():
    assert normalize_box([320, 240, 64, 48], 640, 480) == (100, 100, 500, 500)
    assert normalize_box([64, 240, 320, 48], 640, 480) == (100, 100, 500, 500)


def test_outside_and_negative_coordinates_are_clamped():
    assert box_text([-50, -1, 5000, 480], 640, 480) == "<box>(0,0),(999,999)</box>"


def test_zero_area_box_is_degenerate():
    with pytest.raises(DegenerateBox) as info:
        normalize_box([10, 10, 10, 50], 640, 480)
    assert info.value.reason == "degenerate_box"
    with pytest.raises(DegenerateBox):  # entirely right of the image: both x clamp to 999
        normalize_box([700, 10, 800, 50], 640, 480)


def test_wide_5000x10_image():
    assert box_text([0, 0, 5000, 10], 5000, 10) == "<box>(0,0),(999,999)</box>"
    assert box_text([2500, 5, 5000, 10], 5000, 10) == "<box>(500,500),(999,999)</box>"
    assert box_text([100, 2, 110, 8], 5000, 10) == "<box>(20,200),(22,800)</box>"
    with pytest.raises(DegenerateBox):  # 4 px of 5000 -> 20.0 and 20.8 both become 20
        normalize_box([100, 2, 104, 8], 5000, 10)


def test_several_boxes_for_one_phrase():
    text = ref_text("bees") + boxes_text([[0, 0, 10, 10], [10, 10, 20, 20]], 20, 20)
    assert text == "<ref>bees</ref><box>(0,0),(500,500)</box><box>(500,500),(999,999)</box>"


@pytest.mark.parametrize(
    ("box", "reason"),
    [
        ([1, 2, 3], "bad_box"),
        ([1, 2, 3, "4"], "bad_box"),
        ([1, 2, 3, float("nan")], "bad_box"),
        ([True, 2, 3, 4], "bad_box"),
        ("1,2,3,4", "bad_box"),
        (None, "bad_box"),
    ],
)
def test_malformed_boxes(box, reason):
    with pytest.raises(BoxError) as info:
        normalize_box(box, 640, 480)
    assert info.value.reason == reason


@pytest.mark.parametrize(("width", "height"), [(0, 480), (640, -1), (None, 480), (640, True), ("640", 480)])
def test_bad_image_size(width, height):
    with pytest.raises(BadImageSize) as info:
        normalize_box([1, 2, 3, 4], width, height)
    assert info.value.reason == "bad_image_size"


def test_boxes_text_needs_at_least_one_box():
    with pytest.raises(BoxError):
        boxes_text([], 640, 480)


def test_quad_exact_string_keeps_point_order():
    quad = [[20, 10], [180, 10], [180, 40], [20, 40]]
    assert quad_text(quad, 200, 100) == "<quad>(100,100),(900,100),(900,400),(100,400)</quad>"
    rotated = [[180, 10], [180, 40], [20, 40], [20, 10]]
    assert normalize_quad(rotated, 200, 100) == [(900, 100), (900, 400), (100, 400), (100, 100)]


def test_collinear_quad_is_degenerate_and_wrong_shapes_are_bad():
    with pytest.raises(DegenerateBox):
        normalize_quad([[0, 0], [10, 10], [20, 20], [30, 30]], 100, 100)
    with pytest.raises(BoxError) as info:
        normalize_quad([[0, 0], [10, 0], [10, 10]], 100, 100)
    assert info.value.reason == "bad_box"
    with pytest.raises(BoxError):
        normalize_quad([[0, 0], [10, 0], [10, 10], [0]], 100, 100)
