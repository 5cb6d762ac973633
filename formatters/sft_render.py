"""SFT rendering: a dialogue -> finetune.py ChatML conversations, measured and split to fit `max_len`.

A dialogue is rendered as finetune.py JSON (`Picture {n}: <img>{path}</img>\\n` before the question of the
turn that shows the image) and measured with the exact tokenizer; formatters/sft.py's docstring says how
an over-long dialogue is split.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping

from vlcurate.formatters.sft_dialogue import Dialogue, Exchange, Text
from vlcurate.formatters.sft_templates import PICTURE_NAME
from vlcurate.formatters.stage1 import RejectSample, image_tag
from vlcurate.model.qwen_tokenizer import ImagePathError, QwenTokenizer, get_tokenizer, preprocess_chatml


@functools.lru_cache(maxsize=4)
def _overheads(tok: QwenTokenizer) -> tuple[int, int, int]:
    """(system block, user turn, assistant turn) structural token counts, measured with finetune.py's
    own preprocess so the running sums below equal its length exactly."""
    system = preprocess_chatml([], 0, tokenizer=tok).length
    user = preprocess_chatml([{"from": "user", "value": ""}], 0, tokenizer=tok).length
    both = preprocess_chatml(
        [{"from": "user", "value": ""}, {"from": "assistant", "value": ""}], 0, tokenizer=tok
    ).length
    return system, user - system, both - user


def _text(parts: Text, lang: str, numbers: Mapping[int, int]) -> str:
    return "".join(p if isinstance(p, str) else PICTURE_NAME[lang].format(numbers[p.image]) for p in parts)


@dataclasses.dataclass(frozen=True)
class Piece:
    """A rendered part of a dialogue: finetune.py conversations, images in announcement order, tokens."""

    conversations: list[dict[str, str]]
    images: tuple[str, ...]
    tokens: int


@dataclasses.dataclass(frozen=True)
class _Rendered:
    """One exchange rendered for the piece being built, not yet added to it."""

    user: str
    assistant: str
    numbers: dict[int, int]  # the piece's numbering with this exchange's new pictures
    cost: int  # tokens the exchange adds


class _PieceBuilder:
    def __init__(self, dialogue: Dialogue, tok: QwenTokenizer) -> None:
        self.dialogue, self.tok = dialogue, tok
        self.system, self.user_cost, self.assistant_cost = _overheads(tok)
        self.numbers: dict[int, int] = {}  # dialogue image index -> picture number in this piece
        self.conversations: list[dict[str, str]] = []
        self.images: list[str] = []
        self.tokens = self.system

    def render(self, ex: Exchange) -> _Rendered:
        """The exchange as this piece would hold it; the piece's state is untouched."""
        numbers = dict(self.numbers)
        announce = []
        # Index order is first-showing order, so images re-shown in a continuation come first.
        for index in sorted(ex.required() - set(numbers)):
            numbers[index] = len(numbers) + 1
            announce.append(f"Picture {numbers[index]}: {image_tag(self.dialogue.images[index])}\n")
        lang = self.dialogue.lang
        user = "".join(announce) + _text(ex.question, lang, numbers)
        assistant = _text(ex.answer, lang, numbers)
        try:
            cost = self.user_cost + self.tok.count(user) + self.assistant_cost + self.tok.count(assistant)
        except ImagePathError as exc:
            raise RejectSample(exc.reason, str(exc)) from None
        return _Rendered(user, assistant, numbers, cost)

    def add(self, rendered: _Rendered) -> None:
        numbers = rendered.numbers
        self.images += [
            self.dialogue.images[i] for i in sorted(numbers, key=numbers.get)[len(self.numbers) :]
        ]
        self.numbers = numbers
        self.conversations += [
            {"from": "user", "value": rendered.user},
            {"from": "assistant", "value": rendered.assistant},
        ]
        self.tokens += rendered.cost

    def piece(self) -> Piece:
        return Piece(self.conversations, tuple(self.images), self.tokens)


def split_dialogue(dialogue: Dialogue, max_len: int, tokenizer: QwenTokenizer | None = None) -> list[Piece]:
    """The dialogue as one piece, or several at exchange boundaries when it exceeds `max_len` tokens.
    RejectSample `turn_too_long` when one exchange cannot fit alone, `empty_dialogue` without exchanges."""
    if not dialogue.exchanges:
        raise RejectSample("empty_dialogue", dialogue.id)
    tok = tokenizer or get_tokenizer()
    pieces: list[Piece] = []
    builder = _PieceBuilder(dialogue, tok)
    for i, ex in enumerate(dialogue.exchanges):
        rendered = builder.render(ex)
        if builder.conversations and builder.tokens + rendered.cost > max_len:
            pieces.append(builder.piece())
            builder = _PieceBuilder(dialogue, tok)
            rendered = builder.render(ex)
        if builder.tokens + rendered.cost > max_len:
            raise RejectSample(
                "turn_too_long",
                f"exchange {i} needs {builder.tokens + rendered.cost} tokens on its own (max {max_len})",
            )
        builder.add(rendered)
    pieces.append(builder.piece())
    return pieces
