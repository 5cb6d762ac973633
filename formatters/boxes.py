"""Pixel boxes and quads to Qwen-VL's `<box>(x1,y1),(x2,y2)</box>` and `<quad>...</quad>` strings.

Coordinates are relative to the ORIGINAL image size (Qwen-VL squashes images to 448x448, so relative
coordinates survive the resize), scaled to [0, 1000) as docs/qwenvl-format.md section 2 says:
`v = min(999, max(0, int(x / W * 1000)))`. Inputs are pixel corners `[x1, y1, x2, y2]` (not x, y, w, h),
and quads are 4 `[x, y]` points in reading order (kept as given). Bad input raises a BoxError subclass
whose `reason` is the reject reason; the formatters turn it into a reject.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from vlcurate.model.qwen_tokenizer import BOX_END, BOX_START, QUAD_END, QUAD_START, REF_END, REF_START


class BoxError(ValueError):
    """A box or quad that is not 4 (or 4x2) finite numbers."""

    reason = "bad_box"


class DegenerateBox(BoxError):
    """Zero area after normalization (e.g. a 3-pixel-wide box in a 5000-pixel-wide image)."""

    reason = "degenerate_box"


class BadImageSize(BoxError):
    """Width or height missing, not a number, or not positive."""

    reason = "bad_image_size"


def _number(value: object, what: str) -> float:
    # bool is an int subclass: True as a coordinate is a data bug, not 1.0.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BoxError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def check_size(width: object, height: object) -> tuple[float, float]:
    try:
        w, h = _number(width, "width"), _number(height, "height")
    except BoxError as exc:
        raise BadImageSize(str(exc)) from None
    if w <= 0 or h <= 0:
        raise BadImageSize(f"image size must be positive, got {width}x{height}")
    return w, h


def norm_coord(value: float, size: float) -> int:
    """The spec's formula; written with comparisons so that huge values cannot overflow int()."""
    v = value / size * 1000
    return 0 if v < 0 else 999 if v >= 999 else int(v)


def normalize_box(box: Sequence[float], width: float, height: float) -> tuple[int, int, int, int]:
    """Pixel corners -> (x1, y1, x2, y2) in [0, 999] with x1 <= x2 and y1 <= y2 (corners reordered)."""
    w, h = check_size(width, height)
    if isinstance(box, (str, bytes)) or not isinstance(box, Sequence) or len(box) != 4:
        raise BoxError(f"a box is [x1, y1, x2, y2], got {box!r}")
    x1, y1, x2, y2 = (_number(v, "box coordinate") for v in box)
    a, b = sorted((norm_coord(x1, w), norm_coord(x2, w)))
    c, d = sorted((norm_coord(y1, h), norm_coord(y2, h)))
    if a == b or c == d:
        raise DegenerateBox(f"box {list(box)} in a {width}x{height} image has zero area after normalization")
    return a, c, b, d


def normalize_quad(points: Sequence[Sequence[float]], width: float, height: float) -> list[tuple[int, int]]:
    """4 pixel points -> 4 normalized points, order kept; zero area (collinear points) is degenerate."""
    w, h = check_size(width, height)
    if isinstance(points, (str, bytes)) or not isinstance(points, Sequence) or len(points) != 4:
        raise BoxError(f"a quad is 4 [x, y] points, got {points!r}")
    out = []
    for point in points:
        if isinstance(point, (str, bytes)) or not isinstance(point, Sequence) or len(point) != 2:
            raise BoxError(f"a quad point is [x, y], got {point!r}")
        out.append((norm_coord(_number(point[0], "x"), w), norm_coord(_number(point[1], "y"), h)))
    doubled_area = sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(out, out[1:] + out[:1]))
    if doubled_area == 0:
        raise DegenerateBox(f"quad {list(points)} in a {width}x{height} image has zero area")
    return out


def box_text(box: Sequence[float], width: float, height: float) -> str:
    """`<box>(x1,y1),(x2,y2)</box>` for one pixel box."""
    x1, y1, x2, y2 = normalize_box(box, width, height)
    return f"{BOX_START}({x1},{y1}),({x2},{y2}){BOX_END}"


def boxes_text(boxes: Sequence[Sequence[float]], width: float, height: float) -> str:
    """Consecutive `<box>` blocks (several boxes for one phrase); at least one box."""
    if isinstance(boxes, (str, bytes)) or not isinstance(boxes, Sequence) or not boxes:
        raise BoxError(f"boxes must be a non-empty list of [x1, y1, x2, y2], got {boxes!r}")
    return "".join(box_text(box, width, height) for box in boxes)


def quad_text(points: Sequence[Sequence[float]], width: float, height: float) -> str:
    """`<quad>(x1,y1),(x2,y2),(x3,y3),(x4,y4)</quad>` for one pixel quad."""
    inner = ",".join(f"({x},{y})" for x, y in normalize_quad(points, width, height))
    return f"{QUAD_START}{inner}{QUAD_END}"


def ref_text(phrase: str) -> str:
    """`<ref>{phrase}</ref>`; the phrase must already be scrubbed of special-token strings."""
    return f"{REF_START}{phrase}{REF_END}"
