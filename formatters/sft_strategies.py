"""SFT dialogue strategies: items -> dialogues (caption, VQA, grounding, multi-image "Picture N:"), and
which pure-text dialogues a run keeps (text_share).

formatters/sft.py's docstring describes each. Every choice is drawn from a `random.Random` seeded by the
run seed and the dialogue id, so a dialogue does not depend on processing order.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable, Iterable, Sequence

from vlcurate.formatters.boxes import ref_text
from vlcurate.formatters.sft_dialogue import Dialogue, Exchange, ImageItem, Text
from vlcurate.formatters.sft_templates import (
    CAPTION_PROMPTS,
    COUNT_PROMPTS,
    GROUNDING_PROMPTS,
    MULTI_CAPTION_PROMPTS,
    MULTI_QUESTION_PROMPTS,
    fill,
)
from vlcurate.schemas.record import stable_hash


def _rng(seed: int, *parts: str) -> random.Random:
    # A str seed hashes with SHA-512: the same stream in every process, whatever PYTHONHASHSEED is.
    return random.Random(":".join(("vlcurate-sft", str(seed), *parts)))


def unit_hash(seed: int, *parts: str) -> float:
    """A number in [0, 1) fixed by seed and parts: seeded selection that ignores processing order."""
    return stable_hash(":".join((str(seed), *parts))) / 2.0**64


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
            fill(rng.choice(GROUNDING_PROMPTS[item.lang]), p=phrase),
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
        facts.append((fill(rng.choice(MULTI_CAPTION_PROMPTS[lang]), index), (item.caption,)))
    for q, a in item.qas:
        facts.append((fill(rng.choice(MULTI_QUESTION_PROMPTS[lang]), index, q=q), (a,)))
    return facts


def multi_image_dialogue(items: Sequence[ImageItem], seed: int) -> Dialogue:
    """One dialogue over 2+ images of one language (see formatters/sft.py's docstring)."""
    ids = [item.id for item in items]
    key = stable_hash("\n".join(ids))
    dialogue_id = f"multi/{key:016x}"
    rng = _rng(seed, dialogue_id)
    lang = items[0].lang
    queues = [_facts(item, i, rng) for i, item in enumerate(items)]
    exchanges: list[Exchange] = []
    if rng.random() < 0.5:  # every picture up front
        everything = tuple(range(len(items)))
        if rng.random() < 0.5:
            question, answer = rng.choice(COUNT_PROMPTS[lang])
            exchanges.append(Exchange((question,), fill(answer, k=str(len(items))), shows=everything))
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


def text_rank(dialogue_id: str, seed: int) -> tuple[float, str]:
    """Where a text dialogue stands in the seeded order that text_cutoff cuts (the id breaks ties)."""
    return unit_hash(seed, "text", dialogue_id), dialogue_id


def text_cutoff(
    image_dialogues: int, ranks: list[tuple[float, str]], share: float
) -> tuple[float, str] | None:
    """The rank of the last text dialogue kept: texts make up at most `share` of all dialogues. A run with
    no image dialogue keeps every text (a text-only config)."""
    if not ranks or share == 0:
        return None
    # The epsilon keeps float error from losing one text (0.1 / 0.9 * 90 must give 10).
    want = len(ranks) if image_dialogues == 0 else math.floor(share / (1 - share) * image_dialogues + 1e-9)
    keep = min(want, len(ranks))
    return sorted(ranks)[keep - 1] if keep else None
