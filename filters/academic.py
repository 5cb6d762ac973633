"""Rules for academic caption sets (CC12M, SBU, ...): Qwen-VL's secondary sources describe them as
"drop texts carrying the dataset's special tags" and "where several texts belong to one image, keep the
longest" (docs/qwenvl-format.md section 1).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from vlcurate.filters.base import Cleaner, GroupStep, reject, set_caption, string_list
from vlcurate.filters.dedup import image_identity
from vlcurate.schemas.record import Pair


class StripTags(Cleaner):
    """Removes a source's placeholder tags (`tags`, e.g. CC12M's `<PERSON>`); `drop: true` rejects instead.

    CC12M replaced names by "<PERSON>" when the set was built. `tags` are literal, case-sensitive strings;
    the default, no tags, makes the step a no-op, so it is configured per source. With `drop=True` a
    caption holding a tag is rejected as `special_tag` instead, which is the secondary sources' reading of
    the paper; stripping (the default) keeps the pair, whose caption may read "<PERSON> at the premiere"
    -> "at the premiere"."""

    name = "strip_tags"
    reasons = ("special_tag",)

    def __init__(self, tags: list[str] | None = None, drop: bool = False) -> None:
        self.tags = [t for t in string_list(tags or [], "tags") if t]
        self.drop = drop

    def clean(self, text: str) -> str:
        found = False
        for tag in self.tags:
            if tag in text:
                text = text.replace(tag, " ")
                found = True
        return " ".join(text.split()) if found else text

    def apply(self, pair: Pair) -> None:
        if not self.tags:
            return
        if self.drop:
            if any(tag in pair.caption for tag in self.tags):
                reject(pair, "special_tag")
            return
        set_caption(pair, self.clean(pair.caption))


def caption_rank(caption: str) -> tuple[int, str]:
    """Orders the captions of one image, longest first (in characters, surrounding whitespace ignored),
    ties to the lexicographically smallest, so no answer depends on the order captions arrive in."""
    return -len(caption.strip()), caption


def keep_longest(captions: Iterable[str]) -> str:
    """The longest of several captions of one image (caption_rank). Raises ValueError when there is none."""
    best = min(captions, key=caption_rank, default=None)
    if best is None:
        raise ValueError("keep_longest needs at least one caption")
    return best


class KeepLongest(GroupStep):
    """Where several captions of one source belong to one image, keeps the pair with the longest caption.

    Reason `shorter_caption`, with the kept pair's uid in meta["longest_of"]. Academic caption sets (SBU,
    COCO-style sets with five captions an image) repeat an image once per caption; Qwen-VL's secondary
    sources keep the longest. Off by default (`enabled: false`): turn it on for such a source
    (`steps: {keep_longest: {enabled: true}}` in its source entry). Images are the same when their bytes
    are; the longest caption counts characters without surrounding whitespace, ties going to the
    lexicographically smallest caption, then the smallest uid (as `keep_longest` does)."""

    name = "keep_longest"
    reasons = ("shorter_caption",)
    needs_image = True
    needs_image_digest = True
    reject_file_prefix = "shorter-captions"
    default_sources = {"enabled": "off: only sets with several captions an image need it"}

    def __init__(self, enabled: bool = False) -> None:
        if not isinstance(enabled, bool):
            raise ValueError(f"keep_longest.enabled must be true or false, not {enabled!r}.")
        self.enabled = enabled

    def active(self) -> bool:
        return self.enabled

    def group_key(self, pair: Pair) -> str | None:
        if not self.enabled:
            return None
        digest = hashlib.blake2b(digest_size=16)
        digest.update(pair.source.encode("utf-8") + b"\x00" + image_identity(pair))
        return digest.hexdigest()

    def rank(self, pair: Pair) -> tuple:
        return (*caption_rank(pair.caption), pair.uid)

    def mark_loser(self, pair: Pair, winner: str) -> None:
        reject(pair, "shorter_caption")
        pair.meta["longest_of"] = winner
