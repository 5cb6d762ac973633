"""The SFT dialogue model (formatters/sft.py): what the strategies build and the renderer splits.

An `ImageItem` is one checked input record about one image (formatters/sft_records.py); a `Dialogue` is a
list of `Exchange`s over images, whose text names pictures with `Ref`s so that a continuation can renumber
them (formatters/sft_render.py).
"""

from __future__ import annotations

import dataclasses

KINDS = ("caption", "vqa", "grounding", "multi_image", "text")


@dataclasses.dataclass(frozen=True)
class Ref:
    """A picture named in text (dialogue image index); rendered with the number it has in the sample."""

    image: int


Text = tuple[str | Ref, ...]


@dataclasses.dataclass(frozen=True)
class Exchange:
    """A user turn and its answer. `shows`: images first shown in this turn (dialogue indexes, ascending).
    `needs`: earlier images this exchange is about; with the pictures its text names, a continuation that
    starts after their first showing shows them again."""

    question: Text
    answer: Text
    shows: tuple[int, ...] = ()
    needs: tuple[int, ...] = ()

    def required(self) -> set[int]:
        named = {p.image for p in (*self.question, *self.answer) if isinstance(p, Ref)}
        return set(self.shows) | set(self.needs) | named


@dataclasses.dataclass(frozen=True)
class Dialogue:
    """`images`: output-relative paths, indexed in order of first showing. `records`: ids of the input
    records it was built from (for accounting)."""

    id: str
    kind: str
    lang: str
    images: tuple[str, ...]
    exchanges: tuple[Exchange, ...]
    records: tuple[str, ...]

    def __post_init__(self) -> None:
        # Programming errors of a strategy, not bad data: fail loudly.
        shown = 0
        for ex in self.exchanges:
            if list(ex.shows) != list(range(shown, shown + len(ex.shows))):
                raise ValueError(f"{self.id}: images must be shown once each, in index order")
            shown += len(ex.shows)
            if any(i >= shown for i in ex.required()):
                raise ValueError(f"{self.id}: an exchange needs an image not shown yet")
        if shown != len(self.images):
            raise ValueError(f"{self.id}: {len(self.images)} images but {shown} shown")


@dataclasses.dataclass(frozen=True)
class ImageItem:
    """One input record about one image, checked and scrubbed: what the strategies consume."""

    id: str
    kind: str  # caption | vqa | grounding
    lang: str
    image: str  # output-relative path
    caption: str = ""
    qas: tuple[tuple[str, str], ...] = ()
    grounds: tuple[tuple[str, str], ...] = ()  # (phrase, `<box>...` markup)
