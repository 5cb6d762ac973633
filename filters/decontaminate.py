"""Benchmark decontamination: drops training pairs whose image matches an evaluation image.

An image is a match when its perceptual hash (the one decode_check takes, filters/image_hash.py) lies within
`radius` bits of an evaluation image's hash: the same near-duplicate test as near_dedup, so a re-encoded,
resized or slightly cropped copy of a test image is caught too. The evaluation images' hashes enter
near_dedup's bands as entries that rank before every pair and never lose (filters/near_dedup.py), so the
search never compares all pairs with all evaluation images.

`sets`: paths of evaluation sets, each a folder of images (hashed when the job starts, as decode_check hashes
a pair's image) or a text file of `id<TAB>hash` lines (`vlcurate hashes DIR` writes one). Reason
`eval_overlap`, with the matched evaluation image's id (`<set name>/<file>`) in meta["eval_match"]. With no
sets the step is off and costs nothing.
"""

from __future__ import annotations

from vlcurate.filters.base import GroupStep, reject, string_list
from vlcurate.filters.image_hash import NEAR_DUP_RADIUS
from vlcurate.filters.near_dedup import EVAL_REASON, HASH_KEY, Entry, as_key, band_keys, check_radius
from vlcurate.schemas.record import Pair

_PAIR = 1


class Decontaminate(GroupStep):
    """Drops pairs whose image is within `radius` bits of an evaluation image's hash (module docstring)."""

    name = "decontaminate"
    reasons = (EVAL_REASON,)
    needs_image = True
    needs = {"decode_check": "the perceptual hash it takes of every image"}
    reject_file_prefix = "eval-overlap"
    compares_hashes = True
    same_params_everywhere = True
    default_sources = {
        "sets": "none: name the evaluation sets your model is tested on",
        "radius": "near_dedup's default radius: a near duplicate of a test image is as contaminating as a copy",
    }

    def __init__(self, sets: list[str] | None = None, radius: int = NEAR_DUP_RADIUS) -> None:
        check_radius(radius, "decontaminate.radius")
        self.sets = string_list(sets or [], "decontaminate.sets")
        self.radius = radius

    def active(self) -> bool:
        return bool(self.sets)

    def entry(self, pair: Pair) -> Entry | None:
        hash_hex = pair.meta.get(HASH_KEY) if self.sets else None
        return None if not hash_hex else ((_PAIR, as_key(pair.uid)), hash_hex)

    def bucket_keys(self, pair: Pair) -> list[str]:
        return band_keys(pair.meta[HASH_KEY], self.radius)

    def eval_entry(self, eval_id: str, hash_hex: str) -> tuple[list[str], Entry]:
        """An evaluation image's bucket keys and entry: it ranks before every pair."""
        return band_keys(hash_hex, self.radius), ((0, as_key(eval_id)), hash_hex)

    def loses_to(self, winner: tuple) -> bool:
        """Only an evaluation image takes a pair out; pairs near each other are near_dedup's business."""
        return winner[0] == 0

    def mark_loser(self, pair: Pair, winner: str) -> None:
        reject(pair, EVAL_REASON)
        pair.meta["eval_match"] = winner
