"""Rules for academic caption sets (CC12M, SBU, ...): Qwen-VL's secondary sources describe them as
"drop texts carrying the dataset's special tags" and "where several texts belong to one image, keep the
longest" (docs/qwenvl-format.md section 1).
"""

from __future__ import annotations

from collections.abc import Iterable

from vlcurate.filters.base import Cleaner, reject, set_caption, string_list
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


def keep_longest(captions: Iterable[str]) -> str:
    """The longest of several captions of one image (in characters, surrounding whitespace ignored).

    Ties go to the lexicographically smallest caption, so the answer does not depend on the order in which
    a grouping step delivers the captions. Raises ValueError when there is none.
    """
    best: str | None = None
    best_key: tuple[int, str] | None = None
    for caption in captions:
        key = (-len(caption.strip()), caption)
        if best_key is None or key < best_key:
            best, best_key = caption, key
    if best is None:
        raise ValueError("keep_longest needs at least one caption")
    return best
