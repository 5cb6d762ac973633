"""Image size filters (Qwen-VL paper, appendix A.1, steps 1 and 2), on the EXIF-oriented width and height
that `probe_image` read from the header, so no pixel is decoded here.

A pair whose probe failed has no width/height; it is already rejected, and in audit mode these filters
leave it alone (no score, no extra reason).
"""

from __future__ import annotations

from vlcurate.filters.base import Filter
from vlcurate.schemas.image_header import PIL_MAX_IMAGE_PIXELS
from vlcurate.schemas.record import Pair


class MaxPixels(Filter):
    """Rejects images with more than `max_pixels` pixels before anything decodes them.

    Reason `too_many_pixels`. Default: PIL's MAX_IMAGE_PIXELS (89,478,485), the decompression-bomb guard.
    Score `pixels`."""

    name = "max_pixels"
    reasons = ("too_many_pixels",)
    needs_image = True
    default_sources = {"max_pixels": "PIL's MAX_IMAGE_PIXELS, its decompression-bomb guard"}
    needs = {"probe_image": "the image size"}
    score_names = ("pixels",)

    def __init__(self, max_pixels: int = PIL_MAX_IMAGE_PIXELS) -> None:
        self.max_pixels = max_pixels

    def score(self, pair: Pair) -> dict[str, float]:
        if pair.width is None or pair.height is None:
            return {}
        return {"pixels": pair.width * pair.height}

    def decide(self, scores: dict[str, float]) -> str | None:
        return "too_many_pixels" if scores.get("pixels", 0) > self.max_pixels else None


class MinSide(Filter):
    """Rejects images whose shorter side is below `min_side` pixels.

    Reason `too_small`. Default 200: DataComp's basic filter (Gadre et al. 2023) keeps images whose smaller dimension is at
    least 200 px. Score `min_side`."""

    name = "min_side"
    reasons = ("too_small",)
    needs_image = True
    default_sources = {"min_side": "DataComp's basic filter, Gadre et al. 2023"}
    needs = {"probe_image": "the image size"}
    score_names = ("min_side",)
    histograms = {"min_side": (0.0, 1024.0, 64)}
    what_if = {"min_side": ("min_side", "min")}

    def __init__(self, min_side: int = 200) -> None:
        self.min_side = min_side

    def score(self, pair: Pair) -> dict[str, float]:
        if pair.width is None or pair.height is None:
            return {}
        return {"min_side": min(pair.width, pair.height)}

    def decide(self, scores: dict[str, float]) -> str | None:
        side = scores.get("min_side")
        return "too_small" if side is not None and side < self.min_side else None


class AspectRatio(Filter):
    """Rejects images whose aspect ratio max(W, H) / min(W, H) is above `max_ratio`.

    Reason `aspect_ratio`. Default 3.0: DataComp's basic filter (Gadre et al. 2023) keeps aspect ratios of at most 3.
    Score `aspect_ratio` (always >= 1, so portrait and landscape share one histogram)."""

    name = "aspect_ratio"
    reasons = ("aspect_ratio",)
    needs_image = True
    default_sources = {"max_ratio": "DataComp's basic filter, Gadre et al. 2023"}
    needs = {"probe_image": "the image size"}
    score_names = ("aspect_ratio",)
    histograms = {"aspect_ratio": (1.0, 6.0, 50)}
    what_if = {"max_ratio": ("aspect_ratio", "max")}

    def __init__(self, max_ratio: float = 3.0) -> None:
        self.max_ratio = max_ratio

    def score(self, pair: Pair) -> dict[str, float]:
        if not pair.width or not pair.height:
            return {}
        return {"aspect_ratio": max(pair.width, pair.height) / min(pair.width, pair.height)}

    def decide(self, scores: dict[str, float]) -> str | None:
        ratio = scores.get("aspect_ratio")
        return "aspect_ratio" if ratio is not None and ratio > self.max_ratio else None
