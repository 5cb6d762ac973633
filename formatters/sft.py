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
"""

from __future__ import annotations

import dataclasses
import functools
import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from vlcurate.formatters.boxes import BoxError, boxes_text, check_size, ref_text
from vlcurate.formatters.sft_validate import validate_sample
from vlcurate.formatters.stage1 import RejectSample, check_utf8, checked_image_path, free_text, image_tag
from vlcurate.model.qwen_tokenizer import (
    IGNORE_INDEX,
    ImagePathError,
    QwenTokenizer,
    get_tokenizer,
    preprocess_chatml,
)
from vlcurate.schemas.record import stable_hash

LANGS = ("en", "zh")
KINDS = ("caption", "vqa", "grounding", "multi_image", "text")

# --- templates (written for vlcurate; {n} names a picture, {q} a question, {p} a phrase, {k} a count) ----
CAPTION_PROMPTS = {
    "en": (
        "Describe this image briefly.",
        "What is shown in this picture?",
        "Write a short caption for this image.",
        "What can you see in this image?",
        "Give a one-sentence description of the picture.",
        "Summarize the image in one sentence.",
    ),
    "zh": (
        "简要描述这张图片。",
        "这张图片里有什么？",
        "为这张图片写一句简短的说明。",
        "你在图中看到了什么？",
        "用一句话描述这张图。",
        "请概括一下图片的内容。",
    ),
}
MULTI_CAPTION_PROMPTS = {
    "en": (
        "Describe {n}.",
        "What does {n} show?",
        "Write a short caption for {n}.",
        "What can you see in {n}?",
    ),
    "zh": ("描述一下{n}。", "{n}里有什么？", "为{n}写一句简短的说明。", "{n}中能看到什么？"),
}
MULTI_QUESTION_PROMPTS = {
    "en": ("About {n}: {q}", "Look at {n}. {q}", "Regarding {n}: {q}"),
    "zh": ("关于{n}：{q}", "看{n}，{q}", "请看{n}。{q}"),
}
COUNT_PROMPTS = {
    "en": (
        ("How many pictures have I shared?", "{k} pictures."),
        ("How many images are there?", "There are {k}."),
    ),
    "zh": (("我一共发了几张图片？", "一共{k}张。"), ("这里有几张图？", "{k}张。")),
}
GROUNDING_PROMPTS = {
    "en": (
        "Where is {p}? Give its bounding box.",
        "Find {p} in the image.",
        "Locate {p} and output its bounding box.",
        "Detect {p}.",
    ),
    "zh": ("{p}在哪里？请给出它的检测框。", "找出图中的{p}。", "框出{p}。", "输出{p}的检测框。"),
}
PICTURE_NAME = {"en": "Picture {}", "zh": "图{}"}  # how text names a picture, by dialogue language

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_FIELD = re.compile(r"(\{[a-z]\})")


# --- the dialogue model -----------------------------------------------------------------------------------


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


# --- input records -> items ----------------------------------------------------------------------------


def record_id(record: Mapping[str, Any], fallback: str) -> str:
    value = record.get("id")
    if value is None or value == "":
        return fallback
    if isinstance(value, str):
        return check_utf8(value, "id")
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise RejectSample("bad_field", "id must be a string or an integer")


def resolve_lang(lang: object, *texts: str) -> str:
    """The given language, or "zh" when the text holds Han characters, else "en"."""
    if lang is None:
        return "zh" if any(_HAN.search(t) for t in texts) else "en"
    if lang not in LANGS:
        raise RejectSample("unsupported_lang", f"lang {lang!r} (expected 'en' or 'zh')")
    return str(lang)


def _list(record: Mapping[str, Any], name: str) -> list:
    value = record.get(name)
    if value is None:
        raise RejectSample("missing_field", name)
    if not isinstance(value, list):
        raise RejectSample("bad_field", f"{name} must be a list")
    if not value:
        raise RejectSample("empty_field", name)
    return value


def _object(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise RejectSample("bad_field", f"{where} must be an object")
    return value


def caption_item(item_id: str, caption: object, lang: object, image: str) -> ImageItem:
    text = free_text(caption, "caption")
    return ImageItem(item_id, "caption", resolve_lang(lang, text), checked_image_path(image), caption=text)


def vqa_item(item_id: str, record: Mapping[str, Any], image: str) -> ImageItem:
    qas = []
    for i, qa in enumerate(_list(record, "qas")):
        qa = _object(qa, f"qas[{i}]")
        qas.append(
            (
                free_text(qa.get("question"), f"qas[{i}].question"),
                free_text(qa.get("answer"), f"qas[{i}].answer"),
            )
        )
    lang = resolve_lang(record.get("lang"), *(q for q, _ in qas))
    return ImageItem(item_id, "vqa", lang, checked_image_path(image), qas=tuple(qas))


def grounding_item(
    item_id: str, record: Mapping[str, Any], image: str, file_size: tuple[int, int] | None = None
) -> ImageItem:
    """`file_size`: the image file's (width, height); boxes are only right relative to the real pixels."""
    width, height = check_size(record.get("width"), record.get("height"))
    if file_size is not None and (width, height) != tuple(file_size):
        raise RejectSample(
            "image_size_mismatch",
            f"record says {width:g}x{height:g}, the file is {file_size[0]}x{file_size[1]}",
        )
    grounds = []
    for i, entry in enumerate(_list(record, "phrases")):
        entry = _object(entry, f"phrases[{i}]")
        phrase = free_text(entry.get("phrase"), f"phrases[{i}].phrase")
        if entry.get("boxes") is None:
            raise RejectSample("missing_field", f"phrases[{i}].boxes")
        grounds.append((phrase, boxes_text(entry["boxes"], width, height)))
    lang = resolve_lang(record.get("lang"), *(p for p, _ in grounds))
    return ImageItem(item_id, "grounding", lang, checked_image_path(image), grounds=tuple(grounds))


def text_dialogue(item_id: str, record: Mapping[str, Any]) -> Dialogue:
    turns = _list(record, "conversations")
    values = []
    for i, turn in enumerate(turns):
        turn = _object(turn, f"conversations[{i}]")
        expected = "user" if i % 2 == 0 else "assistant"
        if turn.get("from") != expected:
            raise RejectSample(
                "bad_roles", f"conversations[{i}] must be from {expected} (first user, alternating)"
            )
        values.append(free_text(turn.get("value"), f"conversations[{i}].value"))
    if len(values) % 2:
        raise RejectSample("bad_roles", "the last turn must be from the assistant")
    exchanges = tuple(Exchange((q,), (a,)) for q, a in zip(values[0::2], values[1::2]))
    return Dialogue(item_id, "text", resolve_lang(record.get("lang"), *values), (), exchanges, (item_id,))


def parse_guard(build: Callable[[], Any]) -> Any:
    """Runs a parser; box errors become RejectSample too (callers catch only RejectSample)."""
    try:
        return build()
    except BoxError as exc:
        raise RejectSample(exc.reason, str(exc)) from None


# --- strategies: items -> dialogues ---------------------------------------------------------------------


def _rng(seed: int, *parts: str) -> random.Random:
    # A str seed hashes with SHA-512: the same stream in every process, whatever PYTHONHASHSEED is.
    return random.Random(":".join(("vlcurate-sft", str(seed), *parts)))


def unit_hash(seed: int, *parts: str) -> float:
    """A number in [0, 1) fixed by seed and parts: seeded selection that ignores processing order."""
    return stable_hash(":".join((str(seed), *parts))) / 2.0**64


def _fill(template: str, ref: int | None = None, **texts: str) -> Text:
    """Template -> text parts. The template is split before the texts go in, so braces in input text stay
    literal; adjacent strings are merged."""
    parts: list[str | Ref] = []
    for piece in _FIELD.split(template):
        if piece == "{n}":
            assert ref is not None
            parts.append(Ref(ref))
            continue
        value = texts[piece[1:-1]] if _FIELD.fullmatch(piece) else piece
        if value:
            if parts and isinstance(parts[-1], str):
                parts[-1] += value
            else:
                parts.append(value)
    return tuple(parts)


def caption_dialogue(item: ImageItem, seed: int) -> Dialogue:
    prompt = _rng(seed, item.id).choice(CAPTION_PROMPTS[item.lang])
    exchange = Exchange((prompt,), (item.caption,), shows=(0,))
    return Dialogue(item.id, "caption", item.lang, (item.image,), (exchange,), (item.id,))


def vqa_dialogue(item: ImageItem, seed: int) -> Dialogue:
    exchanges = tuple(
        Exchange((q,), (a,), shows=(0,) if i == 0 else (), needs=(0,)) for i, (q, a) in enumerate(item.qas)
    )
    return Dialogue(item.id, "vqa", item.lang, (item.image,), exchanges, (item.id,))


def grounding_dialogue(item: ImageItem, seed: int) -> Dialogue:
    rng = _rng(seed, item.id)
    exchanges = tuple(
        Exchange(
            _fill(rng.choice(GROUNDING_PROMPTS[item.lang]), p=phrase),
            (ref_text(phrase) + boxes,),
            shows=(0,) if i == 0 else (),
            needs=(0,),
        )
        for i, (phrase, boxes) in enumerate(item.grounds)
    )
    return Dialogue(item.id, "grounding", item.lang, (item.image,), exchanges, (item.id,))


SINGLE_STRATEGIES: dict[str, Callable[[ImageItem, int], Dialogue]] = {
    "caption": caption_dialogue,
    "vqa": vqa_dialogue,
    "grounding": grounding_dialogue,
}


def single_dialogue(item: ImageItem, seed: int) -> Dialogue:
    return SINGLE_STRATEGIES[item.kind](item, seed)


def in_multi_image_pool(item: ImageItem, seed: int, share: float) -> bool:
    """Whether a caption/VQA item goes into a multi-image dialogue (grounding stays single)."""
    return item.kind in ("caption", "vqa") and unit_hash(seed, "multi", item.id) < share


def _facts(item: ImageItem, index: int, rng: random.Random) -> list[tuple[Text, Text]]:
    """(question naming the picture, answer) pairs an image offers."""
    lang, facts = item.lang, []
    if item.caption:
        facts.append((_fill(rng.choice(MULTI_CAPTION_PROMPTS[lang]), index), (item.caption,)))
    for q, a in item.qas:
        facts.append((_fill(rng.choice(MULTI_QUESTION_PROMPTS[lang]), index, q=q), (a,)))
    return facts


def multi_image_dialogue(items: Sequence[ImageItem], seed: int) -> Dialogue:
    """One dialogue over 2+ images of one language (see the module docstring)."""
    ids = [item.id for item in items]
    dialogue_id = f"multi/{stable_hash(chr(10).join(ids)):016x}"
    rng = _rng(seed, dialogue_id)
    lang = items[0].lang
    queues = [_facts(item, i, rng) for i, item in enumerate(items)]
    exchanges: list[Exchange] = []
    if rng.random() < 0.5:  # every picture up front
        everything = tuple(range(len(items)))
        if rng.random() < 0.5:
            question, answer = rng.choice(COUNT_PROMPTS[lang])
            exchanges.append(Exchange((question,), _fill(answer, k=str(len(items))), shows=everything))
        else:
            question, answer = queues[rng.randrange(len(items))].pop(0)
            exchanges.append(Exchange(question, answer, shows=everything))
    else:  # one picture per turn, each with its first fact
        for i, queue in enumerate(queues):
            question, answer = queue.pop(0)
            exchanges.append(Exchange(question, answer, shows=(i,)))
    order = list(range(len(items)))
    rng.shuffle(order)
    while any(queues):  # the remaining facts, round robin over the pictures
        for i in order:
            if queues[i]:
                question, answer = queues[i].pop(0)
                exchanges.append(Exchange(question, answer))
    images = tuple(item.image for item in items)
    return Dialogue(dialogue_id, "multi_image", lang, images, tuple(exchanges), tuple(ids))


def group_multi_image(
    items: Iterable[ImageItem], seed: int, min_images: int, max_images: int
) -> list[Dialogue]:
    """Multi-image dialogues from the pooled items of ONE language: items in seeded-hash order, cut into
    groups of min..max images; a remainder too small for a group gives single-image dialogues."""
    # The whole item breaks ties, so records sharing an id still give one order, whatever the input order.
    ordered = sorted(items, key=lambda it: (unit_hash(seed, "order", it.id), dataclasses.astuple(it)))
    if not ordered:
        return []
    rng = _rng(seed, "groups", ordered[0].lang)
    out, start = [], 0
    while len(ordered) - start >= min_images:
        size = min(rng.randint(min_images, max_images), len(ordered) - start)
        out.append(multi_image_dialogue(ordered[start : start + size], seed))
        start += size
    out += [single_dialogue(item, seed) for item in ordered[start:]]
    return out


# --- rendering, splitting, measuring --------------------------------------------------------------------


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


class _PieceBuilder:
    def __init__(self, dialogue: Dialogue, tok: QwenTokenizer) -> None:
        self.dialogue, self.tok = dialogue, tok
        self.system, self.user_cost, self.assistant_cost = _overheads(tok)
        self.numbers: dict[int, int] = {}  # dialogue image index -> picture number in this piece
        self.conversations: list[dict[str, str]] = []
        self.images: list[str] = []
        self.tokens = self.system

    def render(self, ex: Exchange) -> tuple[str, str, dict[int, int], int]:
        """(user value, assistant value, new numbering, token cost), state untouched."""
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
        return user, assistant, numbers, cost

    def add(self, rendered: tuple[str, str, dict[int, int], int]) -> None:
        user, assistant, numbers, cost = rendered
        self.images += [
            self.dialogue.images[i] for i in sorted(numbers, key=numbers.get)[len(self.numbers) :]
        ]
        self.numbers = numbers
        self.conversations += [{"from": "user", "value": user}, {"from": "assistant", "value": assistant}]
        self.tokens += cost

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
        if builder.conversations and builder.tokens + rendered[3] > max_len:
            pieces.append(builder.piece())
            builder = _PieceBuilder(dialogue, tok)
            rendered = builder.render(ex)
        if builder.tokens + rendered[3] > max_len:
            raise RejectSample(
                "turn_too_long",
                f"exchange {i} needs {builder.tokens + rendered[3]} tokens on its own (max {max_len})",
            )
        builder.add(rendered)
    pieces.append(builder.piece())
    return pieces


# --- samples -----------------------------------------------------------------------------------------------


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
    exists = path_exists or set(dialogue.images).__contains__
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
