"""The synthetic visual domain: coloured shapes at named positions on a tinted background.

Shared by the synthetic dataset generator (synth/) and the training of the bundled tiny CLIP
model, which must learn to match `caption_en`/`caption_zh` text to `render`ed images. Everything here is
deterministic: a scene is drawn from a `random.Random`, and `render` depends only on the scene and size.

Shapes are large (about 28% of the shorter side across), filled with a saturated colour and outlined in a
darker shade, so a 32x32 downscale still shows each shape's colour and rough position. The background is a
soft light falloff plus sparse grain so that JPEG files look like photographs, not flat graphics.
"""

from __future__ import annotations

import functools
import hashlib
import math
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vlcurate.model.int_math import ceil_div

# Shape colours: saturated and far apart in RGB so a tiny model can tell them apart.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 35),
    "green": (35, 170, 60),
    "blue": (35, 80, 225),
    "yellow": (245, 215, 25),
    "purple": (140, 50, 175),
    "orange": (245, 130, 20),
    "white": (250, 250, 250),
    "black": (15, 15, 15),
}
COLORS_ZH: dict[str, str] = {
    "red": "红色",
    "green": "绿色",
    "blue": "蓝色",
    "yellow": "黄色",
    "purple": "紫色",
    "orange": "橙色",
    "white": "白色",
    "black": "黑色",
}
KINDS: tuple[str, ...] = ("circle", "square", "triangle", "star", "ring", "cross")
KINDS_ZH: dict[str, str] = {
    "circle": "圆形",
    "square": "正方形",
    "triangle": "三角形",
    "star": "五角星",
    "ring": "圆环",
    "cross": "十字",
}
POSITIONS: tuple[str, ...] = ("left", "right", "top", "bottom", "center")
POSITIONS_EN: dict[str, str] = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
    "center": "in the center",
}
POSITIONS_ZH: dict[str, str] = {
    "left": "左边",
    "right": "右边",
    "top": "上方",
    "bottom": "下方",
    "center": "中间",
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "grey": (128, 128, 128),
    "beige": (225, 210, 175),
    "light blue": (170, 200, 235),
    "pink": (240, 185, 200),
    "dark green": (30, 75, 45),
    "dark blue": (25, 35, 85),
}
BACKGROUNDS_ZH: dict[str, str] = {
    "grey": "灰色",
    "beige": "米色",
    "light blue": "浅蓝色",
    "pink": "粉色",
    "dark green": "深绿色",
    "dark blue": "深蓝色",
}
# Short upper-case words a shop sign or poster might carry: the OCR-like content of a scene.
WORDS: tuple[str, ...] = ("SALE", "OPEN", "STOP", "NEW", "CAFE", "HELLO", "BOOKS", "MUSIC")

# Centre of each position as fractions of (width, height).
_ANCHORS: dict[str, tuple[float, float]] = {
    "left": (0.2, 0.5),
    "right": (0.8, 0.5),
    "top": (0.5, 0.2),
    "bottom": (0.5, 0.8),
    "center": (0.5, 0.5),
}
_SHAPE_COUNT_WEIGHTS = (0.4, 0.35, 0.25)  # 1, 2 or 3 shapes
_WORD_PROBABILITY = 0.3
_MIN_CONTRAST = 110  # Euclidean RGB distance between a shape and its background
_CANVAS = 1024


@dataclass(frozen=True)
class Shape:
    kind: str
    color: str
    position: str


@dataclass(frozen=True)
class Scene:
    shapes: tuple[Shape, ...]
    background: str
    word: str | None


def random_scene(rng: random.Random) -> Scene:
    """1-3 shapes at distinct positions, each colour contrasting with the background; a word 30% of the
    time."""
    background = rng.choice(sorted(BACKGROUNDS))
    count = rng.choices((1, 2, 3), weights=_SHAPE_COUNT_WEIGHTS)[0]
    colors = [c for c in COLORS if math.dist(COLORS[c], BACKGROUNDS[background]) >= _MIN_CONTRAST]
    shapes = tuple(
        Shape(kind=rng.choice(KINDS), color=rng.choice(colors), position=position)
        for position in rng.sample(POSITIONS, count)
    )
    word = rng.choice(WORDS) if rng.random() < _WORD_PROBABILITY else None
    return Scene(shapes=shapes, background=background, word=word)


# ---------------------------------------------------------------------------------------------- render


@functools.lru_cache(maxsize=16)
def _canvas(background: str, size: int) -> Image.Image:
    """A square backdrop for one background colour: a soft radial light (+-24 levels) plus sparse grain.

    Built once and cropped at a seeded offset per image, so the light falls from a different direction in
    each image at the cost of a memory copy. The grain (12% of pixels moved by up to 5 levels) comes from
    Python's seeded PRNG, stable across numpy versions, and is sparse so PNG encoding stays fast.
    """
    rgb = np.clip(np.asarray(BACKGROUNDS[background], dtype=np.float32), 30, 225)
    axis = np.arange(size, dtype=np.float32) - (size - 1) / 2
    radius = np.hypot(axis[None, :], axis[:, None]) / (size * 0.7072)  # 0 at the centre, ~1 in corners
    light = 24 * np.cos(np.pi * radius)
    noise = np.frombuffer(random.Random(f"grain:{size}").randbytes(2 * size * size), dtype=np.uint8)
    hit, amount = noise[0::2].reshape(size, size), noise[1::2].reshape(size, size)
    grain = np.where(hit < 31, (amount % 11).astype(np.float32) - 5, np.float32(0))
    pixels = np.clip(rgb[None, None, :] + (light + grain)[:, :, None], 0, 255)
    return Image.fromarray(pixels.astype(np.uint8), "RGB")


@functools.lru_cache(maxsize=1)
def _font() -> ImageFont.ImageFont:
    # The bitmap font is the same on every machine; FreeType rendering may differ between versions.
    loader = getattr(ImageFont, "load_default_imagefont", None)
    return loader() if loader else ImageFont.load_default()


def _render_seed(scene: Scene, width: int, height: int) -> int:
    digest = hashlib.blake2b(f"{scene!r}|{width}x{height}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def _background(background: str, width: int, height: int, rng: random.Random) -> Image.Image:
    size = max(_CANVAS, ceil_div(max(width, height), 512) * 512)  # canvases come in steps of 512 px
    ox, oy = rng.randrange(size - width + 1), rng.randrange(size - height + 1)
    return _canvas(background, size).crop((ox, oy, ox + width, oy + height))


def _darker(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    if sum(rgb) < 120:  # black: a mid-grey outline keeps it visible on dark backgrounds
        return (90, 90, 90)
    return (int(rgb[0] * 0.55), int(rgb[1] * 0.55), int(rgb[2] * 0.55))


def _polygon(cx: float, cy: float, radii: list[float], start: float = -90.0) -> list[tuple[float, float]]:
    step = 360.0 / len(radii)
    return [
        (cx + r * math.cos(math.radians(start + i * step)), cy + r * math.sin(math.radians(start + i * step)))
        for i, r in enumerate(radii)
    ]


def _draw_shape(draw: ImageDraw.ImageDraw, shape: Shape, cx: float, cy: float, r: float) -> None:
    fill = COLORS[shape.color]
    line = _darker(fill)
    edge = max(2, round(r / 14))
    if shape.kind == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill, outline=line, width=edge)
    elif shape.kind == "square":
        h = r * 0.85
        draw.rectangle((cx - h, cy - h, cx + h, cy + h), fill=fill, outline=line, width=edge)
    elif shape.kind == "triangle":
        draw.polygon(_polygon(cx, cy + r * 0.12, [r * 1.1] * 3), fill=fill, outline=line, width=edge)
    elif shape.kind == "star":
        draw.polygon(
            _polygon(cx, cy + r * 0.05, [r * 1.1, r * 0.45] * 5), fill=fill, outline=line, width=edge
        )
    elif shape.kind == "ring":
        band = max(3, round(r * 0.34))
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=line, width=band)
        draw.ellipse(
            (cx - r + edge, cy - r + edge, cx + r - edge, cy + r - edge), outline=fill, width=band - 2 * edge
        )
    elif shape.kind == "cross":
        a, t = r * 0.95, r * 0.32
        points = [
            (-t, -a),
            (t, -a),
            (t, -t),
            (a, -t),
            (a, t),
            (t, t),
            (t, a),
            (-t, a),
            (-t, t),
            (-a, t),
            (-a, -t),
            (-t, -t),
        ]
        draw.polygon([(cx + x, cy + y) for x, y in points], fill=fill, outline=line, width=edge)
    else:
        raise ValueError(f"unknown shape kind {shape.kind!r}; known: {', '.join(KINDS)}")


def _draw_word(image: Image.Image, scene: Scene, background: tuple[int, int, int]) -> None:
    """The word in the first free slot (bottom, top, center, left, right), scaled up from the bitmap font
    with nearest-neighbour so its pixels stay crisp."""
    assert scene.word is not None
    taken = {s.position for s in scene.shapes}
    slot = next(p for p in ("bottom", "top", "center", "left", "right") if p not in taken)
    width, height = image.size
    max_w = width * (0.6 if slot in ("top", "bottom") else 0.28)
    font = _font()
    left, top, right, bottom = font.getbbox(scene.word)
    mask = Image.new("L", (right - left, bottom - top), 0)
    ImageDraw.Draw(mask).text((-left, -top), scene.word, fill=255, font=font)
    scale = max(1, int(min(max_w / mask.width, 0.13 * height / mask.height)))
    mask = mask.resize((mask.width * scale, mask.height * scale), Image.Resampling.NEAREST)
    ax, ay = _ANCHORS[slot]
    x, y = round(ax * width - mask.width / 2), round(ay * height - mask.height / 2)
    ink = (15, 15, 15) if sum(background) > 380 else (245, 245, 245)
    image.paste(Image.new("RGB", mask.size, ink), (x, y), mask)


def render(scene: Scene, width: int, height: int) -> Image.Image:
    """The scene as an RGB image of the given size; the same scene and size always give the same pixels."""
    rng = random.Random(_render_seed(scene, width, height))
    image = _background(scene.background, width, height, rng)
    draw = ImageDraw.Draw(image)
    short = min(width, height)
    for shape in scene.shapes:
        ax, ay = _ANCHORS[shape.position]
        # Small jitter so equal scenes at different sizes are not pixel-aligned copies.
        cx = (ax + rng.uniform(-0.02, 0.02)) * width
        cy = (ay + rng.uniform(-0.02, 0.02)) * height
        _draw_shape(draw, shape, cx, cy, short * 0.14 * rng.uniform(0.92, 1.08))
    if scene.word is not None:
        _draw_word(image, scene, BACKGROUNDS[scene.background])
    return image


# -------------------------------------------------------------------------------------------- captions


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _join_en(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _join_zh(items: list[str]) -> str:
    return items[0] if len(items) == 1 else "、".join(items[:-1]) + "和" + items[-1]


def caption_en(scene: Scene, rng: random.Random) -> str:
    """An English caption naming every shape's colour, kind and position, the background and the word."""
    things = [f"{_article(s.color)} {s.color} {s.kind} {POSITIONS_EN[s.position]}" for s in scene.shapes]
    shapes = _join_en(things)
    bg = scene.background
    count = ("One shape", "Two shapes", "Three shapes")[len(scene.shapes) - 1]
    templates = (
        f"{shapes[0].upper()}{shapes[1:]}, on {_article(bg)} {bg} background",
        f"A picture of {shapes} against {_article(bg)} {bg} background",
        f"On {_article(bg)} {bg} background you can see {shapes}",
        f"{bg[0].upper()}{bg[1:]} background with {shapes}",
        f"Simple graphic of {shapes}, drawn on {_article(bg)} {bg} background",
        f"{count} on {_article(bg)} {bg} background: {shapes}",
        f"An illustration showing {shapes} over a {bg} backdrop",
    )
    text = rng.choice(templates)
    if scene.word is None:
        return text + "."
    word = scene.word
    return rng.choice(
        (
            f'{text}, with the word "{word}".',
            f'{text}. The word "{word}" is written on it.',
            f'{text}, and the text "{word}" written in block letters.',
            f'{text}. It reads "{word}".',
        )
    )


def caption_zh(scene: Scene, rng: random.Random) -> str:
    """A Chinese caption naming every shape's colour, kind and position, the background and the word."""
    bg = BACKGROUNDS_ZH[scene.background]
    has = "，".join(
        f"{POSITIONS_ZH[s.position]}有一个{COLORS_ZH[s.color]}的{KINDS_ZH[s.kind]}" for s in scene.shapes
    )
    is_ = "，".join(
        f"{POSITIONS_ZH[s.position]}是一个{COLORS_ZH[s.color]}的{KINDS_ZH[s.kind]}" for s in scene.shapes
    )
    located = _join_zh(
        [f"位于{POSITIONS_ZH[s.position]}的{COLORS_ZH[s.color]}{KINDS_ZH[s.kind]}" for s in scene.shapes]
    )
    # At most 46 ideographs for three shapes and a word: the length filter's Chinese maximum is 50.
    templates = (
        f"{bg}背景上，{has}",
        f"{bg}背景的图片，{has}",
        f"图中是{bg}的背景，{is_}",
        f"{is_}，背景是{bg}",
        f"在{bg}背景上画着{located}",
        f"图里有{located}，背景为{bg}",
    )
    text = rng.choice(templates)
    if scene.word is None:
        return text + "。"
    word = scene.word
    return rng.choice(
        (f"{text}，上面写着 {word}。", f"{text}，印着英文 {word}。", f"{text}。图中文字：{word}。")
    )
