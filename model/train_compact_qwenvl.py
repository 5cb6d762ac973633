"""Trains the bundled compact Qwen-VL (bundled:compact-qwenvl) on vlcurate's synthetic shapes domain.

    python -m vlcurate.model.train_compact_qwenvl --out model/weights/compact-qwenvl

A tool, imported by nothing in the package: unlike the rest of model/, it imports formatters/ and
pipelines/ (the layering is schemas <- model <- formatters <- pipelines), because its token sequences must
be exactly what our shards hold. Samples come from scenes (model/scenes.py) through the project's own
formatters: stage-2 samples (formatters/stage2.format_stage2 -> trainer_view.stage_sample_view) of five
tasks, and SFT samples (formatters/sft dialogues: caption, VQA, grounding, multi-image "Picture n:",
text -> trainer_view.sft_view). Images are rendered small (112-224 px), JPEG-encoded, kept in memory by
path, and reach the model through qwenvl_images.image_batch, the checker's own preprocessing (448 px).

Seeded end to end, CPU only (about 15 minutes on 2 idle cores; --device cuda is for experiments). The
recipe, and why:
- A step takes one group of 3 scenes and the 6-8 samples that show them: the ViT encodes each image once.
- A dense auxiliary head (not saved) makes every adapter output predict, for its cell of the 16x16 grid,
  a 4x4 thumbnail, its (row, column), and the kind, colour and box digits of the shape it lies on (from
  the renderer's geometry). It stands in for the pretraining Qwen-VL's ViT starts from (OpenCLIP):
  without it the decoder learns the text templates within minutes and never starts to read the image.
- Token ids that never occur in the training samples keep zero embeddings (tied in/out): their logit is
  exactly 0, so the loss adds their count to the partition function (log-sum-exp with log(n_unused))
  and equals the full-vocabulary cross-entropy the checker computes, while the softmax runs over the few
  hundred ids the domain uses.
Writes config.json + model.safetensors (fp16) and eval.json: held-out losses per task, the share of
samples whose own image gives a lower loss than another sample's, and how model/loss_flags.py catches
planted defects (swapped images, mirrored boxes, exchanged captions) at its defaults and over a grid of
its thresholds, all measured on the saved weights; the per-sample losses are stored too (`--reflag`
recomputes the flags from them after a change of loss_flags).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math
import os
import random
import time

from vlcurate.formatters.boxes import normalize_box
from vlcurate.formatters.sft import build_samples
from vlcurate.formatters.sft_records import caption_item, grounding_item, text_dialogue, vqa_item
from vlcurate.formatters.sft_strategies import multi_image_dialogue, single_dialogue
from vlcurate.formatters.stage2 import format_stage2
from vlcurate.model import loss_flags
from vlcurate.model.qwen_tokenizer import ENDOFTEXT_ID, IGNORE_INDEX
from vlcurate.model.qwenvl_config import QwenVLConfig
from vlcurate.model.qwenvl_losses import partner_images, partner_indices, supervised_ids
from vlcurate.model.scenes import (
    COLORS,
    COLORS_ZH,
    KINDS,
    KINDS_ZH,
    caption_en,
    caption_zh,
    random_scene,
    render,
)
from vlcurate.model.trainer_view import TrainerView, sft_view, stage_sample_view
from vlcurate.synth.scene_tasks import scene_phrases, scene_qas, shape_boxes, text_dialogues

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
VISION_LR = float(os.environ.get("VISION_LR", "1"))  # experiment knob
AUX_WEIGHT = float(os.environ.get("AUX_WEIGHT", "1"))  # experiment knob
MIRROR_IOU = 0.3  # a mirrored box counts as moved when it overlaps every true box less than this


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

    def __init__(self, seed: str) -> None:
        self.rng = random.Random(seed)
        self.images: dict[str, bytes] = {}
        self.shots: dict[str, Shot] = {}

    def shot(self) -> Shot:
        scene = random_scene(self.rng)
        width, height = self.rng.randint(112, 224), self.rng.randint(112, 224)
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


def _iou(a, b) -> float:
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def mirrored(boxes: list[list[float]], width: int) -> list[list[float]] | None:
    """Boxes mirrored left-right (x -> width - x, i.e. 1000 - x once normalized), or None when one of
    them would still overlap a true box (IoU >= MIRROR_IOU): only a box that moves is a defect."""
    out = [[width - b[2], b[1], width - b[0], b[3]] for b in boxes]
    return out if all(_iou(m, b) < MIRROR_IOU for m in out for b in boxes) else None


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
        found = mirrored(phrase["boxes"], shot.width) if defect == "mirrored_boxes" else phrase["boxes"]
        return found and _stage2({**base, "phrase": phrase["phrase"], "boxes": found})
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
        moved = [mirrored(ref["boxes"], shot.width) for ref in refs]
        if not all(moved) or any(_iou(m[0], b) >= MIRROR_IOU for m in moved for b in boxes):
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
            moved = [mirrored(p["boxes"], shot.width) for p in phrases]
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
    domain: Domain, n_groups: int, per_scene: int = 2, multi: float = 0.3, text: float = 0.2
) -> list[list[Example]]:
    """Groups of 3 scenes with `per_scene` single-image samples of distinct tasks each, plus a multi-image
    dialogue over 2-3 of them (probability `multi`) and a text dialogue (probability `text`). A training
    step takes one group: the ViT encodes each image once for all the samples that show it."""
    rng, groups = domain.rng, []
    single, weights = list(TASK_WEIGHTS), list(TASK_WEIGHTS.values())
    for g in range(n_groups):
        shots = [domain.shot() for _ in range(3)]
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


# --- the dense auxiliary objective ---------------------------------------------------------------------

AUX_OUTPUTS = 48 + 2 + (1 + len(KINDS)) + (1 + len(COLORS)) + 8 * 10


def dense_targets(shot: Shot, side: int):
    """Per grid cell (row-major), from the renderer's geometry: its (row, column) in [-1, 1]; the kind and
    colour (0: background) of the shape whose box holds the cell's centre, and the hundreds and tens
    digits of that box's normalized coordinates, as its `<box>(x1,y1),(x2,y2)</box>` text writes them."""
    import torch

    axis = (torch.arange(side, dtype=torch.float32) + 0.5) / side  # cell centres in [0, 1]
    rows, cols = torch.meshgrid(axis, axis, indexing="ij")
    x, y = cols.reshape(-1), rows.reshape(-1)
    kind = torch.zeros(side * side, dtype=torch.long)
    color = torch.zeros(side * side, dtype=torch.long)
    digits = torch.zeros(side * side, 8, dtype=torch.long)
    w, h = shot.width, shot.height
    for shape, box in zip(shot.scene.shapes, shape_boxes(shot.scene, w, h)):
        inside = (x >= box[0] / w) & (x <= box[2] / w) & (y >= box[1] / h) & (y <= box[3] / h)
        kind[inside] = KINDS.index(shape.kind) + 1  # later shapes are drawn on top
        color[inside] = list(COLORS).index(shape.color) + 1
        digits[inside] = torch.tensor([d for v in normalize_box(box, w, h) for d in (v // 100, v // 10 % 10)])
    return torch.stack([y, x], -1) * 2 - 1, kind, color, digits


def dense_loss(pred, pixels, targets):
    """Each image slot predicts its cell's 4x4 thumbnail and (row, column), and the kind, colour and box
    digits of the shape it lies on: the ViT and adapter learn what the decoder needs (what and where), as
    a pretrained vision tower would bring. pred [n, slots, AUX_OUTPUTS], pixels [n, 3, S, S]."""
    import torch
    import torch.nn.functional as F

    n, slots, _ = pred.shape
    side = math.isqrt(slots)
    thumbs = F.avg_pool2d(pixels, pixels.shape[-1] // (4 * side)).unfold(2, 4, 4).unfold(3, 4, 4)
    thumbs = thumbs.permute(0, 2, 3, 1, 4, 5).reshape(n, slots, 48)  # [n, slots, 3 x 4 x 4]
    where, kind, color, digits = (torch.stack(t) for t in zip(*targets))
    on_shape = kind > 0
    k, c = 50 + 1 + len(KINDS), 50 + 2 + len(KINDS) + len(COLORS)
    return (
        F.mse_loss(pred[..., :48], thumbs)
        + F.mse_loss(pred[..., 48:50], where)
        + F.cross_entropy(pred[..., 50:k].reshape(-1, k - 50), kind.reshape(-1))
        + F.cross_entropy(pred[..., k:c].reshape(-1, c - k), color.reshape(-1))
        + F.cross_entropy(pred[..., c:][on_shape].reshape(-1, 10), digits[on_shape].reshape(-1))
    )


# --- training --------------------------------------------------------------------------------------------


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


def train(
    out: str,
    config: QwenVLConfig,
    n_groups: int,
    steps: int,
    lr: float,
    seed: int,
    per_scene: int = 2,
    device: str = "cpu",
) -> dict:
    import torch
    import torch.nn.functional as F
    from torch import nn

    from vlcurate.model.qwenvl import QwenVL
    from vlcurate.model.qwenvl_images import image_batch
    from vlcurate.model.qwenvl_weights import save_local_dir

    start = time.time()
    torch.manual_seed(seed)
    domain = Domain(f"compact-qwenvl:train:{seed}")
    groups = training_groups(domain, n_groups, per_scene)
    vocab = domain_ids([e for g in groups for e in g])
    n_samples = sum(map(len, groups))
    print(f"{n_samples} training samples, {len(vocab)} distinct ids, {time.time() - start:.0f}s", flush=True)

    model = QwenVL(config).to(device)
    # While training, the embedding holds only the domain's rows; `table` maps an id to its row.
    table = torch.zeros(config.decoder.vocab_size, dtype=torch.long, device=device)
    table[torch.tensor(vocab, device=device)] = torch.arange(len(vocab), device=device)
    rows = nn.Parameter(torch.randn(len(vocab), config.decoder.hidden_size).mul_(0.02).to(device))
    del model.wte
    model.wte = lambda ids: F.embedding(table[ids], rows)  # what QwenVL.embed calls
    log_unused = torch.tensor(math.log(config.decoder.vocab_size - len(vocab)), device=device)
    aux = nn.Linear(config.decoder.hidden_size, AUX_OUTPUTS).to(device)  # the dense auxiliary head, not saved
    side = math.isqrt(config.adapter.queries)
    targets_of: dict[str, tuple] = {}
    params = [rows, *model.parameters(), *aux.parameters()]
    vision = {id(p) for p in model.visual.parameters()}
    param_groups = [
        {
            "params": [p for p in params if p.dim() >= 2 and id(p) in vision],
            "weight_decay": 0.05,
            "lr": lr * VISION_LR,
        },
        {
            "params": [p for p in params if p.dim() < 2 and id(p) in vision],
            "weight_decay": 0.0,
            "lr": lr * VISION_LR,
        },
        {
            "params": [p for p in params if p.dim() >= 2 and id(p) not in vision],
            "weight_decay": 0.05,
            "lr": lr,
        },
        {"params": [p for p in params if p.dim() < 2 and id(p) not in vision], "weight_decay": 0.0, "lr": lr},
    ]
    optimizer = torch.optim.AdamW(param_groups, lr=lr, betas=(0.9, 0.98))
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=[g["lr"] for g in param_groups], total_steps=steps, pct_start=0.05
    )
    order = random.Random(seed)
    model.train()
    for step in range(steps):
        if step % len(groups) == 0:
            order.shuffle(groups)  # a new epoch
        group = groups[step % len(groups)]
        paths = sorted({p for e in group for p in e.view.images})
        pixels = image_batch([domain.images[p] for p in paths], config.vision.image_size).to(device)
        features = model.visual(pixels)  # [n, slots, hidden]
        for p in paths:
            if p not in targets_of:
                targets_of[p] = tuple(t.to(device) for t in dense_targets(domain.shots[p], side))
        aux_loss = dense_loss(aux(features), pixels, [targets_of[p] for p in paths])
        where = {p: i for i, p in enumerate(paths)}
        losses = []
        for part in sub_batches(group):
            ids, labels = (t.to(device) for t in batch_tensors(part))
            index = [where[p] for e in part for p in e.view.images]
            h = model.hidden_states(ids, features=features[index] if index else None)[:, :-1]
            targets = labels[:, 1:]
            r, c = torch.nonzero(targets != IGNORE_INDEX, as_tuple=True)
            logits = h[r, c] @ rows.T  # [S, domain]; the other ids' logits are exactly 0
            norm = torch.logaddexp(torch.logsumexp(logits, -1), log_unused)
            losses.append(norm - logits.gather(1, table[targets[r, c]].unsqueeze(1)).squeeze(1))
        loss = torch.cat(losses).mean()
        optimizer.zero_grad(set_to_none=True)
        (loss + AUX_WEIGHT * aux_loss).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        if step % 50 == 0 or step == steps - 1:
            print(
                f"step {step:5d}  loss {loss.item():.3f}  aux {aux_loss.item():.3f}  {time.time() - start:.0f}s",
                flush=True,
            )
    seconds = time.time() - start

    # Export: the full vocabulary, zero rows for the ids the domain never uses.
    full = torch.zeros(config.decoder.vocab_size, config.decoder.hidden_size)
    full[torch.tensor(vocab)] = rows.detach().cpu()
    model = model.cpu()
    model.wte = nn.Embedding.from_pretrained(full, freeze=False)
    save_local_dir(model.eval(), config, out)
    return {
        "seed": seed,
        "steps": steps,
        "train_groups": n_groups,
        "samples_per_scene": per_scene,
        "train_samples": n_samples,
        "train_images": len(domain.images),
        "lr": lr,
        "domain_ids": len(vocab),
        "train_seconds": round(seconds, 1),
        "parameters": sum(p.numel() for p in model.parameters()),
        "file_bytes": os.path.getsize(os.path.join(out, "model.safetensors")),
    }


# --- evaluation ------------------------------------------------------------------------------------------


def score(
    model, examples: list[Example], images: dict[str, bytes], partners: dict[str, list[str]], size: int
):
    """{id: (loss, swap_loss)}: own images, then `partners[id]` (None without images), as the checker."""
    import torch

    from vlcurate.model.qwenvl_images import image_batch

    out, device = {}, next(model.parameters()).device
    for part in sub_batches(examples, max_tokens=8000):
        ids, labels = (t.to(device) for t in batch_tensors(part))
        own = [p for e in part for p in e.view.images]
        swap = [p for e in part for p in partners[e.id]]
        with torch.inference_mode():
            loss = model.sample_losses(
                ids, labels, image_batch([images[p] for p in own], size) if own else None
            )
            other = model.sample_losses(
                ids, labels, image_batch([images[p] for p in swap], size) if swap else None
            )
        for row, e in enumerate(part):
            out[e.id] = (float(loss[row]), float(other[row]) if e.view.images else None)
    return out


def _flag_rounds(clean: list[dict], defects: list[dict], k: float, min_gain: float, share: float = 0.1):
    """loss_flags on a task's clean rows plus its defects a few at a time (`share` of the clean count per
    round, a realistic defect rate for the robust statistics). Returns (flagged defect ids, mean share
    of clean rows flagged per round)."""
    size = max(1, round(share * len(clean)))
    rounds = [defects[i : i + size] for i in range(0, len(defects), size)] or [[]]
    hit, clean_share = set(), []
    for chunk in rounds:
        flagged = {f.id for f in loss_flags.loss_findings(clean + chunk, k, min_gain)}
        hit |= flagged & {r["id"] for r in chunk}
        clean_share.append(len(flagged & {r["id"] for r in clean}) / len(clean))
    return hit, sum(clean_share) / len(clean_share)


def flag_metrics(rows: list[dict], k: float, min_gain: float) -> dict:
    """Recall per defect kind and the share of clean samples flagged, task by task as the checker runs."""
    by_task: dict[str, list[dict]] = {}
    for row in rows:
        by_task.setdefault(row["task"], []).append(row)
    hit, clean_flags, n_clean = set(), 0.0, 0
    for task_rows in by_task.values():
        clean = [r for r in task_rows if r["defect"] is None]
        found, share = _flag_rounds(clean, [r for r in task_rows if r["defect"]], k, min_gain)
        hit |= found
        clean_flags += share * len(clean)
        n_clean += len(clean)
    recall = {}
    for kind in DEFECT_TASKS:
        ids = [r["id"] for r in rows if r["defect"] == kind]
        recall[kind] = round(sum(i in hit for i in ids) / len(ids), 4)
    return {"recall": recall, "clean_flagged": round(clean_flags / n_clean, 4)}


def evaluate(out: str, seed: int, n_clean: int, n_defect: int, device: str = "cpu") -> dict:
    """Held-out metrics of the saved model in `out` (loaded exactly as the checker loads it)."""
    import statistics

    from vlcurate.model.qwenvl_weights import load_model

    model, config = load_model(f"local-dir:{out}", device=device)
    domain = Domain(f"compact-qwenvl:eval:{seed}")
    examples = make_examples(domain, dict.fromkeys(STAGE2_TASKS + SFT_TASKS, n_clean), tag="clean/")
    for kind, tasks in DEFECT_TASKS.items():
        examples += make_examples(domain, dict.fromkeys(tasks, n_defect), kind, tag=f"{kind}/")
    # Partners as the checker picks them: within a task, in a fixed shuffled order, the next one's images.
    partners, shuffle = {}, random.Random(seed)
    for task in STAGE2_TASKS + SFT_TASKS:
        pool = [e for e in examples if e.task == task]
        shuffle.shuffle(pool)
        found = partner_indices([supervised_ids(e.view.labels) for e in pool], [e.view.images for e in pool])
        for e, j in zip(pool, found):
            partners[e.id] = list(partner_images(e.view.images, () if j is None else pool[j].view.images))
    scores = score(model, examples, domain.images, partners, config.vision.image_size)
    rows = [
        {
            "id": e.id,
            "task": e.task,
            "defect": e.defect,
            "loss": round(scores[e.id][0], 5),
            "swap_loss": None if scores[e.id][1] is None else round(scores[e.id][1], 5),
        }
        for e in examples
    ]
    clean = [r for r in rows if r["defect"] is None]
    tasks = {}
    for task in STAGE2_TASKS + SFT_TASKS:
        mine = [r for r in clean if r["task"] == task]
        entry = {"samples": len(mine), "mean_loss": round(statistics.fmean(r["loss"] for r in mine), 4)}
        if mine[0]["swap_loss"] is not None:
            gains = [r["swap_loss"] - r["loss"] for r in mine]
            entry["mean_swap_loss"] = round(statistics.fmean(r["swap_loss"] for r in mine), 4)
            entry["own_image_lowers_loss"] = round(sum(g > 0 for g in gains) / len(gains), 4)
            entry["median_gain"] = round(statistics.median(gains), 4)
        tasks[task] = entry
    gains = sorted(r["swap_loss"] - r["loss"] for r in clean if r["swap_loss"] is not None)
    return {
        "eval_seed": seed,
        "clean_per_task": n_clean,
        "defects_per_task": n_defect,
        "own_image_lowers_loss": round(sum(g > 0 for g in gains) / len(gains), 4),
        "clean_gain_median": round(statistics.median(gains), 4),
        "clean_gain_p01": round(gains[len(gains) // 100], 4),
        "tasks": tasks,
        **flag_report(rows),
        # Every held-out sample, for recomputing the flags with other rules: [id, task, defect, loss, swap].
        "samples": [[r["id"], r["task"], r["defect"], r["loss"], r["swap_loss"]] for r in rows],
    }


def flag_report(rows: list[dict]) -> dict:
    """loss_flags at its defaults, and over a grid of its two thresholds."""
    grid = [
        {"k": k, "min_gain": g, **flag_metrics(rows, k, g)}
        for k in (2.5, 3.0, 3.5, 4.0, 5.0)
        for g in (0.0, 0.02, 0.05, 0.1, 0.2, 0.3)
    ]
    at_defaults = flag_metrics(rows, loss_flags.OUTLIER_K, loss_flags.MIN_GAIN)
    return {
        "flags": {"k": loss_flags.OUTLIER_K, "min_gain": loss_flags.MIN_GAIN, **at_defaults},
        "flags_by_threshold": grid,
    }


def reflag(folder: str) -> dict:
    """Recomputes eval.json's flags in `folder` from its stored samples (after changing loss_flags)."""
    path = os.path.join(folder, "eval.json")
    with open(path, encoding="utf-8") as fh:
        report = json.load(fh)
    keys = ("id", "task", "defect", "loss", "swap_loss")
    report.update(flag_report([dict(zip(keys, row)) for row in report["samples"]]))
    _write_json(path, report)
    return report


def _write_json(path: str, report: dict) -> None:
    """eval.json, indented, with one line per stored sample."""
    text = json.dumps({k: v for k, v in report.items() if k != "samples"}, indent=1)
    if "samples" in report:
        rows = ",\n  ".join(json.dumps(row, ensure_ascii=False) for row in report["samples"])
        text = text[: -len("\n}")] + f',\n "samples": [\n  {rows}\n ]\n}}'
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text + "\n")


def default_config(overrides: str = "") -> QwenVLConfig:
    """The bundled model's sizes (QwenVLConfig's defaults), with `overrides` (JSON, per section) applied:
    '{"decoder": {"hidden_size": 128}}'."""
    merged = QwenVLConfig().to_dict()
    for section, values in (json.loads(overrides) if overrides else {}).items():
        merged.setdefault(section, {}).update(values)
    return QwenVLConfig.from_dict(merged, where="--config")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "weights", "compact-qwenvl"))
    parser.add_argument("--groups", type=int, default=4000, help="training groups of 3 scenes (one per step)")
    parser.add_argument("--per-scene", type=int, default=2, help="single-image samples per scene")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu (the bundled weights) or cuda (experiments)")
    parser.add_argument("--eval-clean", type=int, default=60, help="held-out clean samples per task")
    parser.add_argument("--eval-defects", type=int, default=20, help="planted defects per (kind, task)")
    parser.add_argument("--config", default="", help="JSON overrides of the model sizes, per section")
    parser.add_argument("--reflag", action="store_true", help="only recompute --out's eval.json flags")
    args = parser.parse_args()
    if args.reflag:
        print(json.dumps(reflag(args.out)["flags"], indent=1))
        return
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    report = train(
        args.out,
        default_config(args.config),
        args.groups,
        args.steps,
        args.lr,
        args.seed,
        args.per_scene,
        args.device,
    )
    started = time.time()
    report.update(evaluate(args.out, args.seed + 1, args.eval_clean, args.eval_defects, args.device))
    report["eval_seconds"] = round(time.time() - started, 1)
    _write_json(os.path.join(args.out, "eval.json"), report)
    print(
        json.dumps({k: v for k, v in report.items() if k not in ("flags_by_threshold", "samples")}, indent=1)
    )


if __name__ == "__main__":
    main()
