"""Integer helpers shared by model/ (batch padding, canvas sizes)."""

from __future__ import annotations


def ceil_div(n: int, d: int) -> int:
    """n / d rounded up, exactly (floor division of the negation: no float rounding for large ints)."""
    return -(-n // d)
