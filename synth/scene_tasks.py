"""What a synthetic scene (model/scenes.py) says as training tasks: the pixel boxes of its shapes as
render draws them, question-answer pairs and grounding phrases true of it, and pure-text dialogues about
colours and shapes. The demo's SFT inputs (sft_inputs.py) and the compact Qwen-VL's trainer
(model/train_compact_qwenvl.py) are made of these, so the bundled model learns what the jobs write.
Answers are true of the rendered image; boxes follow `render`'s geometry (shape_boxes), which a test
checks against the rendered pixels.
"""

from __future__ import annotations

import math
import random
from typing import Any

from vlcurate.model import scenes
from vlcurate.model.int_math import ceil_div
from vlcurate.model.scenes import COLORS_ZH, KINDS_ZH, POSITIONS_EN, POSITIONS_ZH, Scene

ZH_SHARE = 0.3  # of the demo's images and text dialogues: Chinese, the rest English
_COUNT_EN = ("One", "Two", "Three")
_COUNT_ZH = ("一个", "两个", "三个")
_BACKGROUNDS_ZH = scenes.BACKGROUNDS_ZH


# --- where render draws the shapes ---------------------------------------------------------------------


def _polygon_extent(cx: float, cy: float, radii: list[float]) -> tuple[float, float, float, float]:
    step = 2 * math.pi / len(radii)
    xs = [cx + r * math.cos(-math.pi / 2 + i * step) for i, r in enumerate(radii)]
    ys = [cy + r * math.sin(-math.pi / 2 + i * step) for i, r in enumerate(radii)]
    return min(xs), min(ys), max(xs), max(ys)


def _extent(kind: str, cx: float, cy: float, r: float) -> tuple[float, float, float, float]:
    half = {"circle": r, "ring": r, "square": r * 0.85, "cross": r * 0.95}.get(kind)
    if half is not None:
        return cx - half, cy - half, cx + half, cy + half
    if kind == "triangle":
        return _polygon_extent(cx, cy + r * 0.12, [r * 1.1] * 3)
    if kind == "star":
        return _polygon_extent(cx, cy + r * 0.05, [r * 1.1, r * 0.45] * 5)
    raise ValueError(f"unknown shape kind {kind!r}")


def shape_boxes(scene: Scene, width: int, height: int) -> list[list[float]]:
    """Pixel boxes [x1, y1, x2, y2] of `scene.shapes`, in order, as `render(scene, width, height)` draws
    them: the same seeded stream (two draws for the background crop, then jitter x, jitter y and radius
    per shape) and the same shape geometry. Coupled to render's internals on purpose: model/scenes.py
    has no layout function to ask, and tests/formatters/test_sft.py checks the boxes against pixels."""
    rng = random.Random(scenes._render_seed(scene, width, height))
    size = max(scenes._CANVAS, ceil_div(max(width, height), 512) * 512)
    rng.randrange(size - width + 1)
    rng.randrange(size - height + 1)
    short = min(width, height)
    boxes = []
    for shape in scene.shapes:
        ax, ay = scenes._ANCHORS[shape.position]
        cx = (ax + rng.uniform(-0.02, 0.02)) * width
        cy = (ay + rng.uniform(-0.02, 0.02)) * height
        x1, y1, x2, y2 = _extent(shape.kind, cx, cy, short * 0.14 * rng.uniform(0.92, 1.08))
        boxes.append(
            [
                round(max(0.0, x1), 1),
                round(max(0.0, y1), 1),
                round(min(width, x2), 1),
                round(min(height, y2), 1),
            ]
        )
    return boxes


# --- questions, phrases, dialogues ---------------------------------------------------------------------


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


def scene_qas(scene: Scene, lang: str, rng: random.Random) -> list[dict[str, str]]:
    """3-5 questions with answers true of the scene, in a seeded order (the count question first)."""
    n = len(scene.shapes)
    if lang == "en":
        first = {"question": "How many shapes are in the picture?", "answer": f"{_COUNT_EN[n - 1]}."}
        pool = [{"question": "What colour is the background?", "answer": f"{_cap(scene.background)}."}]
        for s in scene.shapes:
            where = POSITIONS_EN[s.position]
            pool.append({"question": f"What colour is the shape {where}?", "answer": f"{_cap(s.color)}."})
            pool.append({"question": f"What shape is {where}?", "answer": f"A {s.color} {s.kind}."})
        if scene.word:
            pool.append({"question": "What word is written in the image?", "answer": f'"{scene.word}".'})
    else:
        first = {"question": "图中有几个图形？", "answer": f"{_COUNT_ZH[n - 1]}。"}
        pool = [{"question": "背景是什么颜色？", "answer": f"{_BACKGROUNDS_ZH[scene.background]}。"}]
        for s in scene.shapes:
            where = POSITIONS_ZH[s.position]
            pool.append({"question": f"{where}的图形是什么颜色？", "answer": f"{COLORS_ZH[s.color]}。"})
            pool.append(
                {
                    "question": f"{where}是什么图形？",
                    "answer": f"一个{COLORS_ZH[s.color]}的{KINDS_ZH[s.kind]}。",
                }
            )
        if scene.word:
            pool.append({"question": "图中写着什么字？", "answer": f"{scene.word}。"})
    rng.shuffle(pool)
    return [first, *pool[: rng.randint(2, 4)]]


def scene_phrases(scene: Scene, lang: str, width: int, height: int) -> list[dict[str, Any]]:
    """One phrase per distinct (colour, kind), with the boxes of every shape it names."""
    phrases: dict[tuple[str, str], list[list[float]]] = {}
    for shape, box in zip(scene.shapes, shape_boxes(scene, width, height)):
        phrases.setdefault((shape.color, shape.kind), []).append(box)
    out = []
    for (color, kind), boxes in phrases.items():
        phrase = f"the {color} {kind}" if lang == "en" else f"{COLORS_ZH[color]}的{KINDS_ZH[kind]}"
        out.append({"phrase": phrase, "boxes": boxes})
    return out


_MIXES = (("red", "yellow", "orange"), ("blue", "yellow", "green"), ("red", "blue", "purple"))
_CORNERS = (("square", 4), ("triangle", 3), ("circle", 0))


def _text_facts(zh: bool) -> list[tuple[str, str]]:
    facts = []
    for a, b, mix in _MIXES:
        if zh:
            facts.append((f"{COLORS_ZH[a]}和{COLORS_ZH[b]}混合会得到什么颜色？", f"会得到{COLORS_ZH[mix]}。"))
        else:
            facts.append((f"What colour do you get by mixing {a} and {b} paint?", f"You get {mix}."))
    for kind, corners in _CORNERS:
        if zh:
            facts.append((f"{KINDS_ZH[kind]}有几个角？", f"{KINDS_ZH[kind]}有{corners}个角。"))
        else:
            facts.append((f"How many corners does a {kind} have?", f"A {kind} has {corners} corners."))
    return facts


def text_dialogues(n: int, rng: random.Random) -> list[dict[str, Any]]:
    """Pure-text dialogues about colours and shapes, English or Chinese, 1-3 distinct exchanges each."""
    out = []
    for i in range(n):
        facts = rng.sample(_text_facts(rng.random() < ZH_SHARE), rng.randint(1, 3))
        turns = [{"from": r, "value": v} for q, a in facts for r, v in (("user", q), ("assistant", a))]
        out.append({"id": f"chat-{i:04d}", "conversations": turns})
    return out
