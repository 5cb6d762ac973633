"""SFT dialogues for Qwen-VL's finetune.py (docs/qwenvl-format.md section 3): input records -> dialogues ->
token-exact samples that fit `model_max_length`.

Input records (one JSON object per JSONL line; `id` is optional, a string or an integer, and defaults to
`<file stem>-<line number>`; `lang` is optional, "en" or "zh", and defaults to "zh" when the text holds
Han characters, else "en"; `image` is a path relative to the input's `image_root`, else to the JSONL
file's folder; unknown keys are ignored):

    captions   {"id", "image": "imgs/1.jpg", "caption": "A red circle on a grey background.", "lang"}
    vqa        {"id", "image", "lang", "qas": [{"question": "What colour is the circle?",
                                                "answer": "Red."}, ...]}
    grounding  {"id", "image", "width": 640, "height": 480, "lang",
                "phrases": [{"phrase": "the red circle", "boxes": [[x1, y1, x2, y2], ...]}, ...]}
               width/height: the image file's pixel size (checked against the file); boxes: pixel corners.
    text       {"id", "conversations": [{"from": "user", "value": "..."},
                                        {"from": "assistant", "value": "..."}, ...]}
               first user, alternating, last assistant.
    pairs      (not JSONL) a completed `vlcurate clean` output: each kept pair's caption, lang and image.

Construction (every choice is drawn from a `random.Random` seeded by the run seed and the dialogue id, so
it does not depend on processing order):
- caption: one exchange, an instruction prompt from CAPTION_PROMPTS in the caption's language.
- vqa: one multi-turn dialogue per image, the QAs in record order.
- grounding: one multi-turn dialogue per image, one phrase per turn, answered
  `<ref>{phrase}</ref><box>(x1,y1),(x2,y2)</box>...` (boxes via formatters/boxes.py).
- multi-image: 2..k caption/VQA images of one language. Either all pictures come in the first turn, or
  one per turn; questions name their picture ("About Picture 2: ...", "描述一下图2。") and the numbers are
  global over the conversation.
- text: the conversation as given (values scrubbed), no image.
Every free-text value is scrubbed of special-token strings (formatters/stage1.free_text).

Samples: a dialogue is rendered as finetune.py JSON (`Picture {n}: <img>{path}</img>\\n` before the
question of the turn that shows the image) and measured with the exact tokenizer. When it does not fit
`max_len`, it is split at exchange boundaries (never inside an image span or an answer); a continuation
re-announces, with renumbered pictures, every earlier image its turns need, and picture names in its text
follow the new numbers. A dialogue in which one exchange cannot fit alone is rejected (`turn_too_long`).
Every piece is validated (formatters/sft_validate.py); a failing piece is refused (`invalid_<reason>`).

Modules: the dialogue model (sft_dialogue), templates (sft_templates), records -> items (sft_records),
dialogue strategies (sft_strategies), rendering and splitting (sft_render); this one turns a dialogue
into validated samples.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

from vlcurate.formatters.sft_dialogue import Dialogue
from vlcurate.formatters.sft_render import split_dialogue
from vlcurate.formatters.sft_validate import validate_sample
from vlcurate.formatters.stage1 import RejectSample
from vlcurate.model.qwen_tokenizer import IGNORE_INDEX, QwenTokenizer, get_tokenizer


@dataclasses.dataclass(frozen=True)
class SftSample:
    """A validated sample (`sample` is exactly what the shard holds) and its measurements."""

    sample: dict[str, Any]
    kind: str
    images: tuple[str, ...]
    length: int  # finetune.py tokens before padding
    supervised: int  # labels != -100 (content of answers plus <|im_start|>, <|im_end|>, \n of each turn)
    part: int  # 1-based piece number
    parts: int  # pieces the dialogue was split into

    @property
    def id(self) -> str:
        return self.sample["id"]

    @property
    def turns(self) -> int:
        """Exchanges (user + assistant turn pairs)."""
        return len(self.sample["conversations"]) // 2


@dataclasses.dataclass(frozen=True)
class SftReject:
    id: str
    kind: str
    reason: str
    detail: str = ""


def _one_of(paths: Iterable[str]) -> Callable[[str], bool]:
    """A path check that accepts exactly `paths`."""
    allowed = frozenset(paths)
    return lambda path: path in allowed


def build_samples(
    dialogue: Dialogue,
    max_len: int,
    *,
    tokenizer: QwenTokenizer | None = None,
    path_exists: Callable[[str], bool] | None = None,
) -> list[SftSample | SftReject]:
    """Split, render, validate and measure one dialogue. `path_exists` defaults to "is one of the
    dialogue's images" (inside the job those are exactly the images that will be copied)."""
    tok = tokenizer or get_tokenizer()
    try:
        pieces = split_dialogue(dialogue, max_len, tok)
    except RejectSample as exc:
        return [SftReject(dialogue.id, dialogue.kind, exc.reason, exc.detail)]
    exists = path_exists or _one_of(dialogue.images)
    out: list[SftSample | SftReject] = []
    for part, piece in enumerate(pieces, 1):
        sample_id = dialogue.id if len(pieces) == 1 else f"{dialogue.id}#part{part}"
        sample = {"id": sample_id, "conversations": piece.conversations}
        result = validate_sample(sample, max_len, path_exists=exists, tokenizer=tok, length_hint=piece.tokens)
        if not result.ok:
            out.append(SftReject(sample_id, dialogue.kind, result.reject_reason, result.problems[0].detail))
            continue
        encoding = result.encoding
        if encoding is None or encoding.length != piece.tokens:  # a bug in the running sums; never expected
            out.append(SftReject(sample_id, dialogue.kind, "token_count_mismatch", f"{piece.tokens} counted"))
            continue
        supervised = encoding.length - encoding.labels.count(IGNORE_INDEX)  # unpadded: cut at the hint
        out.append(
            SftSample(sample, dialogue.kind, piece.images, encoding.length, supervised, part, len(pieces))
        )
    return out
