"""The defects the synthetic dataset plants, one per pair, in fixed proportions: the table that
records.py draws from and ground_truth.jsonl reports.

Defects (one per pair; `percent` of n, rounded by largest remainder so counts sum to n):

    defect             %   expected_reason      what is planted
    none              32   -                    clean English caption, good image
    chinese           12   -                    clean Chinese caption, good image
    exif_rotated       3   -                    JPEG stored rotated with EXIF orientation 6 or 8
    too_small          4   too_small            shorter side 40-180 px
    aspect_ratio       4   aspect_ratio         long/short side 3.5-6, short side >= 200
    image_undecodable  3   image_undecodable    random bytes, an HTML error page, or a JPEG whose header
                                                is overwritten with junk: PIL cannot identify it
    image_truncated    3   image_truncated      JPEG cut at 40-70% of its bytes: header parses, decode fails
    image_missing      3   image_missing        tar: no image member; parquet: null; jsonl: absent file
    html               4   -                    caption wrapped in tags, with entities (&amp; &nbsp; ...)
    irregular_pattern  4   -                    URL, IMG_1234.JPG file name, "stock photo", "!!!" added
    emoji              4   emoji                plain, skin-tone, ZWJ, flag or keycap emoji in the caption
    disallowed_script  4   disallowed_script    Japanese kana, Hangul, Cyrillic or Arabic words added
    too_short          4   too_short            1-2 words ("image", "red circle"; Chinese <= 3 characters)
    too_long           3   too_long             caption + SEO keyword boilerplate, 450-800 characters
    clip_mismatch      4   - (clip_low_score)   caption describes a different scene (other shapes and
                                                background); only a CLIP step can reject it
    duplicate          3   duplicate            same image bytes and caption as an earlier `none` or
                                                `chinese` pair (that smaller key is the one kept)
    near_duplicate     3   near_duplicate       an earlier `none` or `chinese` pair's image re-posted: JPEG
                                                at quality 50-75, resized to 0.75-0.9 or cropped by 2-5%
                                                (shorter side kept >= 224), or the same bytes; under a new
                                                caption of its scene. Within near_dedup's default radius
                                                of that pair's image and of no other kept image's
    caption_empty      3   caption_empty        empty or whitespace-only caption

Every pair carries only its own defect: otherwise a 224-512 px image with aspect <= 2 and a caption of
4-40 English words (<= 250 characters) or 6-46 Chinese ideographs, holding only printable ASCII, CJK
ideographs and CJK punctuation.
`expected_reason_with_clip` equals `expected_reason` except for clip_mismatch ("clip_low_score").
Languages: `none` is English, `chinese` Chinese, every other defect Chinese with probability 1/4 (about
25% Chinese overall). Image formats of generated images: JPEG 70%, PNG 15%, WebP 15% (exif_rotated and
image_truncated are always JPEG; image_undecodable is stored as .jpg). Same n and seed -> identical bytes.
"""

from __future__ import annotations

import dataclasses
import random


@dataclasses.dataclass(frozen=True)
class Defect:
    name: str
    percent: int
    expected_reason: str | None
    expected_reason_with_clip: str | None


def _defect(name: str, percent: int, reason: str | None, with_clip: str | None = None) -> Defect:
    return Defect(name, percent, reason, with_clip if with_clip is not None else reason)


DEFECTS: tuple[Defect, ...] = (
    _defect("none", 32, None),
    _defect("chinese", 12, None),
    _defect("exif_rotated", 3, None),
    _defect("too_small", 4, "too_small"),
    _defect("aspect_ratio", 4, "aspect_ratio"),
    _defect("image_undecodable", 3, "image_undecodable"),
    _defect("image_truncated", 3, "image_truncated"),
    _defect("image_missing", 3, "image_missing"),
    _defect("html", 4, None),
    _defect("irregular_pattern", 4, None),
    _defect("emoji", 4, "emoji"),
    _defect("disallowed_script", 4, "disallowed_script"),
    _defect("too_short", 4, "too_short"),
    _defect("too_long", 3, "too_long"),
    _defect("clip_mismatch", 4, None, "clip_low_score"),
    _defect("duplicate", 3, "duplicate"),
    _defect("near_duplicate", 3, "near_duplicate"),
    _defect("caption_empty", 3, "caption_empty"),
)
DEFECT_BY_NAME: dict[str, Defect] = {d.name: d for d in DEFECTS}
assert sum(d.percent for d in DEFECTS) == 100


def defect_counts(n: int) -> dict[str, int]:
    """Exact number of pairs per defect for n pairs: largest remainder, ties broken by table order."""
    quotas = [(d.name, n * d.percent / 100) for d in DEFECTS]
    counts = {name: int(q) for name, q in quotas}
    by_remainder = sorted(range(len(quotas)), key=lambda i: (-(quotas[i][1] - int(quotas[i][1])), i))
    for i in by_remainder[: n - sum(counts.values())]:
        counts[quotas[i][0]] += 1
    return counts


def assign_defects(n: int, seed: int) -> list[str]:
    """The defect of each index: the exact counts, shuffled. A duplicate or near duplicate copies an
    earlier clean pair, so if the first of them comes before every clean pair the two swap places (`none`
    has >= 1 pair)."""
    labels = [name for name, count in defect_counts(n).items() for _ in range(count)]
    random.Random(f"vlcurate-synth-defects:{seed}").shuffle(labels)
    for copy in ("duplicate", "near_duplicate"):
        if copy in labels:
            first_copy = labels.index(copy)
            first_clean = min(i for i, d in enumerate(labels) if d in ("none", "chinese"))
            if first_clean > first_copy:
                labels[first_copy], labels[first_clean] = labels[first_clean], labels[first_copy]
    return labels
