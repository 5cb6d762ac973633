"""The samples the compact Qwen-VL trainer learns from and is evaluated on (train_compact_qwenvl.py).

Scenes (model/scenes.py) become samples through the project's own formatters: stage-2 samples
(formatters/stage2.format_stage2 -> trainer_view.stage_sample_view) of five tasks, and SFT samples
(caption, VQA, grounding, multi-image "Picture n:", text -> trainer_view.sft_view), so the model learns
exactly the sequences the jobs write. `defect` plants the faults the eval measures (swapped images,
mirrored boxes, exchanged captions). Part of the offline trainer: imported by nothing in the package
but the trainer and tests (import-linter contract "trainers").
"""

from __future__ import annotations

import dataclasses
import io
import random

from vlcurate.formatters.sft import build_samples
from vlcurate.formatters.sft_records import caption_item, grounding_item, text_dialogue, vqa_item
from vlcurate.formatters.sft_strategies import multi_image_dialogue, single_dialogue
from vlcurate.formatters.stage2 import format_stage2
from vlcurate.model.qwen_tokenizer import ENDOFTEXT_ID, IGNORE_INDEX
from vlcurate.model.qwenvl_losses import MIRROR_IOU, box_iou, mirror_boxes
from vlcurate.model.scenes import (
    COLORS_ZH,
    KINDS_ZH,
    caption_en,
    caption_zh,
    random_scene,
    render,
)
from vlcurate.model.trainer_view import TrainerView, sft_view, stage_sample_view
from vlcurate.synth.scene_tasks import scene_phrases, scene_qas, shape_boxes, text_dialogues
from vlcurate.synth.stage2_inputs import phrase_records

STAGE2_TASKS = ("captioning", "vqa", "referring_grounding", "grounded_captioning", "caption_with_grounding")
SFT_TASKS = ("sft_caption", "sft_vqa", "sft_grounding", "sft_multi_image", "sft_text")
# How often a scene's samples are of each single-image task: grounding (find a named shape, answer with
# its box) is the slowest skill to learn, so it comes more often.
TASK_WEIGHTS = dict.fromkeys(STAGE2_TASKS + SFT_TASKS[:3], 1.0) | {
    "referring_grounding": 2.0,
    "sft_grounding": 1.5,
}
ZH_SHARE = 0.3
MAX_LEN = 2048
# Which planted defect applies to which task: the text must be supervised and must change.
DEFECT_TASKS = {
    "swapped_image": STAGE2_TASKS + SFT_TASKS[:4],
    "mirrored_boxes": ("referring_grounding", "caption_with_grounding", "sft_grounding"),
    "exchanged_caption": ("captioning", "sft_caption"),
}
# Rendered image sides (px): the demo's and the tests' scenes are 256-448 px; smaller ones are upscaled
# to 448 by the checker, so the model sees both sharp and blurred shapes.
SHOT_SIDES = (112, 448)
# The share of grounded captions (both kinds) written as the demo's stage-2 input writes them
# (synth/stage2_inputs.phrase_records: "A picture with <ref>the red circle</ref> in it.").
DEMO_TEXT_SHARE = 0.5


@dataclasses.dataclass(frozen=True)
class Shot:
    """One rendered scene: where the image lives, what it shows, its pixel size and the text language."""

    path: str
    scene: object
    width: int
    height: int
    lang: str


@dataclasses.dataclass(frozen=True)
class Example:
    id: str
    task: str
    view: TrainerView  # ids, labels and image paths in <img> order
    defect: str | None = None


class Domain:
    """Scenes rendered on demand into an in-memory image store {path: JPEG bytes}."""

    def __init__(self, seed: str, sides: tuple[int, int] = SHOT_SIDES) -> None:
        self.rng, self.sides = random.Random(seed), sides
        self.images: dict[str, bytes] = {}
        self.shots: dict[str, Shot] = {}

    def shot(self) -> Shot:
        scene = random_scene(self.rng)
        width, height = self.rng.randint(*self.sides), self.rng.randint(*self.sides)
        path = f"img/{len(self.images):06d}.jpg"
        buffer = io.BytesIO()
        render(scene, width, height).save(buffer, "JPEG", quality=90)
        self.images[path] = buffer.getvalue()
        self.shots[path] = Shot(path, scene, width, height, "zh" if self.rng.random() < ZH_SHARE else "en")
        return self.shots[path]


# --- text of a scene -------------------------------------------------------------------------------------


def _phrase(shape, lang: str) -> str:
    if lang == "zh":
        return f"{COLORS_ZH[shape.color]}的{KINDS_ZH[shape.kind]}"
    return f"{'an' if shape.color[0] in 'aeiou' else 'a'} {shape.color} {shape.kind}"


def _caption(scene, lang: str, rng: random.Random) -> str:
    return caption_zh(scene, rng) if lang == "zh" else caption_en(scene, rng)


# --- one sample per task; `defect` plants a fault, None when it cannot apply ---------------------------


def _stage2(record: dict) -> TrainerView:
    formatted = format_stage2(record)
    if not formatted.ok:  # our own records: a reject is a bug here
        raise ValueError(f"{record['task']}: {formatted.reason} {formatted.detail}")
    return stage_sample_view(formatted.sample["prefix"], formatted.sample["target"])


def _sft(dialogue) -> TrainerView:
    (sample,) = build_samples(dialogue, MAX_LEN)
    if not hasattr(sample, "sample"):
        raise ValueError(f"{dialogue.id}: {sample.reason} {sample.detail}")
    return sft_view(sample.sample["conversations"])


def stage2_view(
    task: str, shot: Shot, rng: random.Random, defect: str | None, other: Shot | None
) -> TrainerView | None:
    s, base = shot.scene, {"task": task, "image": shot.path, "width": shot.width, "height": shot.height}
    boxes = shape_boxes(s, shot.width, shot.height)
    if task == "captioning":
        text_scene = other.scene if defect == "exchanged_caption" else s
        return _stage2({**base, "caption": _caption(text_scene, shot.lang, rng), "lang": shot.lang})
    if task == "vqa":
        qa = rng.choice(scene_qas(s, shot.lang, rng))
        return _stage2({**base, "question": qa["question"], "answers": [{"answer": qa["answer"]}]})
    if task == "referring_grounding":
        phrase = rng.choice(scene_phrases(s, shot.lang, shot.width, shot.height))
        found = mirror_boxes(phrase["boxes"], shot.width) if defect == "mirrored_boxes" else phrase["boxes"]
        return found and _stage2({**base, "phrase": phrase["phrase"], "boxes": found})
    if task in ("grounded_captioning", "caption_with_grounding") and rng.random() < DEMO_TEXT_SHARE:
        phrase = rng.choice(scene_phrases(s, shot.lang, shot.width, shot.height))
        found = mirror_boxes(phrase["boxes"], shot.width) if defect == "mirrored_boxes" else phrase["boxes"]
        return found and _stage2({**base, **phrase_records(phrase["phrase"], found)[task]})
    if task == "grounded_captioning":
        i = rng.randrange(len(s.shapes))
        return _stage2({**base, "box": boxes[i], "caption": _phrase(s.shapes[i], shot.lang)})
    # caption_with_grounding (English only, the prompt says so): a ref per shape phrase of the caption.
    caption, refs, cursor = caption_en(s, rng), [], 0
    for shape, box in zip(s.shapes, boxes):
        words = f"{shape.color} {shape.kind}"
        start = caption.lower().index(words, cursor)
        refs.append({"span": [start, start + len(words)], "boxes": [box]})
        cursor = start + len(words)
    if defect == "mirrored_boxes":
        moved = [mirror_boxes(ref["boxes"], shot.width) for ref in refs]
        if not all(moved) or any(box_iou(m[0], b) >= MIRROR_IOU for m in moved for b in boxes):
            return None
        refs = [{**ref, "boxes": m} for ref, m in zip(refs, moved)]
    return _stage2({**base, "caption": caption, "refs": refs})


def sft_view_of(
    task: str, shots: list[Shot], rng: random.Random, defect: str | None, other: Shot | None, key: str
) -> TrainerView | None:
    seed = rng.randrange(2**31)
    shot = shots[0]
    if task == "sft_text":
        return _sft(text_dialogue(key, text_dialogues(1, rng)[0]))
    if task == "sft_caption":
        text_scene = other.scene if defect == "exchanged_caption" else shot.scene
        item = caption_item(key, _caption(text_scene, shot.lang, rng), shot.lang, shot.path)
        return _sft(single_dialogue(item, seed))
    if task == "sft_vqa":
        record = {"lang": shot.lang, "qas": scene_qas(shot.scene, shot.lang, rng)}
        return _sft(single_dialogue(vqa_item(key, record, shot.path), seed))
    if task == "sft_grounding":
        phrases = scene_phrases(shot.scene, shot.lang, shot.width, shot.height)
        if defect == "mirrored_boxes":
            moved = [mirror_boxes(p["boxes"], shot.width) for p in phrases]
            if not all(moved):
                return None
            phrases = [{**p, "boxes": m} for p, m in zip(phrases, moved)]
        record = {"width": shot.width, "height": shot.height, "lang": shot.lang, "phrases": phrases}
        return _sft(single_dialogue(grounding_item(key, record, shot.path), seed))
    # sft_multi_image: 2-3 pictures of one language, each captioned or questioned.
    items = []
    for i, one in enumerate(shots):
        if rng.random() < 0.5:
            items.append(
                caption_item(f"{key}.{i}", _caption(one.scene, shots[0].lang, rng), shots[0].lang, one.path)
            )
        else:
            record = {"lang": shots[0].lang, "qas": scene_qas(one.scene, shots[0].lang, rng)[:2]}
            items.append(vqa_item(f"{key}.{i}", record, one.path))
    return _sft(multi_image_dialogue(items, seed))


def make_examples(
    domain: Domain, counts: dict[str, int], defect: str | None = None, tag: str = ""
) -> list[Example]:
    """`counts[task]` examples per task (with `defect` planted where it applies), in a seeded order."""
    out = []
    for task, n in counts.items():
        made = 0
        while made < n:
            shots = [
                domain.shot() for _ in range(domain.rng.choice((2, 3)) if task == "sft_multi_image" else 1)
            ]
            other = domain.shot() if defect == "exchanged_caption" else None  # whose caption it gets
            key = f"{tag}{task}-{made:05d}"
            if task in STAGE2_TASKS:
                view = stage2_view(task, shots[0], domain.rng, defect, other)
            else:
                view = sft_view_of(task, shots, domain.rng, defect, other, key)
            if view is None:
                continue  # the defect does not apply to this scene (no box moves): draw another
            if defect == "swapped_image":  # the text stays, the images become a stranger's
                view = dataclasses.replace(view, images=[domain.shot().path for _ in view.images])
            out.append(Example(key, task, view, defect))
            made += 1
    return out


def training_groups(
    domain: Domain,
    n_groups: int,
    per_scene: int = 2,
    multi: float = 0.3,
    text: float = 0.2,
    scenes: int = 3,
) -> list[list[Example]]:
    """Groups of `scenes` scenes with `per_scene` single-image samples of distinct tasks each, plus a multi-image
    dialogue over 2-3 of them (probability `multi`) and a text dialogue (probability `text`). A training
    step takes one group: the ViT encodes each image once for all the samples that show it."""
    rng, groups = domain.rng, []
    single, weights = list(TASK_WEIGHTS), list(TASK_WEIGHTS.values())
    for g in range(n_groups):
        shots = [domain.shot() for _ in range(scenes)]
        group = []
        for i, shot in enumerate(shots):
            tasks: list[str] = []
            while len(tasks) < per_scene:  # distinct tasks, drawn by weight
                task = rng.choices(single, weights)[0]
                if task not in tasks:
                    tasks.append(task)
            for task in tasks:
                key = f"train{g}/{i}/{task}"
                if task in STAGE2_TASKS:
                    view = stage2_view(task, shot, rng, None, None)
                else:
                    view = sft_view_of(task, [shot], rng, None, None, key)
                group.append(Example(key, task, view))
        if rng.random() < multi:
            picked = shots[: rng.choice((2, 3))]
            view = sft_view_of("sft_multi_image", picked, rng, None, None, f"train{g}/multi")
            group.append(Example(f"train{g}/multi", "sft_multi_image", view))
        if rng.random() < text:
            group.append(
                Example(f"train{g}/text", "sft_text", sft_view_of("sft_text", shots, rng, None, None, "t"))
            )
        groups.append(group)
    return groups


# --- tensors ---------------------------------------------------------------------------------------------


def batch_tensors(examples: list[Example]):
    """Right-padded ids and labels [B, T] (pad <|endoftext|>, label -100)."""
    import torch

    length = max(len(e.view.input_ids) for e in examples)
    ids = torch.full((len(examples), length), ENDOFTEXT_ID, dtype=torch.long)
    labels = torch.full((len(examples), length), IGNORE_INDEX, dtype=torch.long)
    for row, e in enumerate(examples):
        ids[row, : len(e.view.input_ids)] = torch.tensor(e.view.input_ids)
        labels[row, : len(e.view.labels)] = torch.tensor(e.view.labels)
    return ids, labels


def domain_ids(examples: list[Example]) -> list[int]:
    """Every id the training samples hold (labels are a subset of the ids)."""
    return sorted({t for e in examples for t in e.view.input_ids} | {ENDOFTEXT_ID})


def sub_batches(examples: list[Example], max_tokens: int = 6000) -> list[list[Example]]:
    """By length, cut so that rows x padded length stays under `max_tokens` (little padding)."""
    out: list[list[Example]] = []
    for e in sorted(examples, key=lambda e: len(e.view.input_ids)):
        if out and len(e.view.input_ids) * (len(out[-1]) + 1) <= max_tokens:
            out[-1].append(e)
        else:
            out.append([e])
    return out
