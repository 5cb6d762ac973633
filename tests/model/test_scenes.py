import itertools
import math
import random

import pytest
import regex
from PIL import Image

from vlcurate.model.scenes import (
    BACKGROUNDS,
    BACKGROUNDS_ZH,
    COLORS,
    COLORS_ZH,
    KINDS,
    KINDS_ZH,
    POSITIONS,
    POSITIONS_ZH,
    WORDS,
    Scene,
    Shape,
    caption_en,
    caption_zh,
    random_scene,
    render,
)

CJK = regex.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
# What the script filter allows and nothing more exotic: printable ASCII, ideographs, CJK punctuation.
ALLOWED = regex.compile(r"[\x20-\x7e\u3400-\u4dbf\u4e00-\u9fff，。、：]*")
ANCHORS = {
    "left": (0.2, 0.5),
    "right": (0.8, 0.5),
    "top": (0.5, 0.2),
    "bottom": (0.5, 0.8),
    "center": (0.5, 0.5),
}


def scenes(count, seed=0):
    rng = random.Random(seed)
    return [random_scene(rng) for _ in range(count)]


def test_tables_are_complete_and_distinct():
    assert len(KINDS) == 6 and len(COLORS) == 8 and len(POSITIONS) == 5
    assert (
        set(COLORS_ZH) == set(COLORS) and set(KINDS_ZH) == set(KINDS) and set(POSITIONS_ZH) == set(POSITIONS)
    )
    assert set(BACKGROUNDS_ZH) == set(BACKGROUNDS)
    assert min(math.dist(a, b) for a, b in itertools.combinations(COLORS.values(), 2)) > 60


def test_random_scenes_are_valid_and_varied():
    drawn = scenes(500)
    for scene in drawn:
        assert 1 <= len(scene.shapes) <= 3
        assert len({s.position for s in scene.shapes}) == len(scene.shapes)
        assert scene.background in BACKGROUNDS and scene.word in (None, *WORDS)
        for shape in scene.shapes:
            assert shape.kind in KINDS and shape.color in COLORS and shape.position in POSITIONS
            assert math.dist(COLORS[shape.color], BACKGROUNDS[scene.background]) >= 110  # visible
    assert {len(s.shapes) for s in drawn} == {1, 2, 3}
    assert 0.2 < sum(s.word is not None for s in drawn) / len(drawn) < 0.4
    assert {s.kind for sc in drawn for s in sc.shapes} == set(KINDS)
    assert {s.color for sc in drawn for s in sc.shapes} == set(COLORS)
    assert scenes(50, seed=1) == scenes(50, seed=1) != scenes(50, seed=2)


def test_render_is_deterministic_rgb_of_the_asked_size():
    scene = scenes(1, seed=3)[0]
    image = render(scene, 300, 220)
    assert image.mode == "RGB" and image.size == (300, 220)
    assert image.tobytes() == render(scene, 300, 220).tobytes()
    assert render(scene, 301, 220).size == (301, 220)
    wide = render(scene, 1400, 230)  # wider than the cached backdrop
    assert wide.size == (1400, 230) and wide.tobytes() == render(scene, 1400, 230).tobytes()


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "ring"])  # a ring is hollow at its anchor
@pytest.mark.parametrize("position", POSITIONS)
def test_a_32px_thumbnail_still_shows_colour_and_position(kind, position):
    for color, background in (("red", "grey"), ("blue", "beige"), ("yellow", "dark blue"), ("white", "pink")):
        scene = Scene((Shape(kind, color, position),), background, None)
        thumb = render(scene, 320, 256).resize((32, 32), Image.Resampling.BOX)
        ax, ay = ANCHORS[position]
        at_shape = thumb.getpixel((int(ax * 32), int(ay * 32)))
        assert math.dist(at_shape, COLORS[color]) < 70, (kind, color, position, at_shape)
        for other, (ox, oy) in ANCHORS.items():  # every other slot shows the background
            if other != position and abs(ox - ax) + abs(oy - ay) > 0.31:
                elsewhere = thumb.getpixel((int(ox * 32), int(oy * 32)))
                assert math.dist(elsewhere, BACKGROUNDS[background]) < 45, (other, elsewhere)


def test_a_ring_is_hollow_and_coloured():
    scene = Scene((Shape("ring", "orange", "center"),), "dark green", None)
    image = render(scene, 400, 400)
    assert math.dist(image.getpixel((200, 200)), BACKGROUNDS["dark green"]) < 45
    band = max(image.getpixel((x, 200)) for x in range(140, 160))  # the left side of the band
    assert math.dist(band, COLORS["orange"]) < 40


def test_the_word_is_drawn():
    plain = Scene((Shape("circle", "red", "left"),), "beige", None)
    worded = Scene(plain.shapes, "beige", "HELLO")
    a, b = render(plain, 400, 300), render(worded, 400, 300)

    # The word sits in the free bottom slot, in dark ink on a light background.
    def dark_pixels(image):
        return sum(1 for x in range(100, 300) for y in range(205, 275) if sum(image.getpixel((x, y))) < 150)

    assert dark_pixels(a) == 0 and dark_pixels(b) > 300


def test_captions_name_every_shape_the_background_and_the_word():
    rng = random.Random(5)
    for scene in scenes(400, seed=4):
        en, zh = caption_en(scene, rng), caption_zh(scene, rng)
        for shape in scene.shapes:
            assert f"{shape.color} {shape.kind}" in en
            assert (
                COLORS_ZH[shape.color] in zh
                and KINDS_ZH[shape.kind] in zh
                and POSITIONS_ZH[shape.position] in zh
            )
        assert scene.background in en.lower() and BACKGROUNDS_ZH[scene.background] in zh
        if scene.word:
            assert f'"{scene.word}"' in en and scene.word in zh
        for caption in (en, zh):
            assert ALLOWED.fullmatch(caption), caption
            assert caption == caption.strip() and "  " not in caption
        assert 4 <= len(en.split()) <= 40 and len(en) <= 250, en
        assert 6 <= len(CJK.findall(zh)) <= 46, zh


def test_the_longest_captions_stay_within_the_length_limits():
    # Longest names everywhere, every template (many rng draws), with a word: the worst case.
    for background in BACKGROUNDS:
        shapes = tuple(Shape(k, "orange", p) for k, p in zip(("triangle", "star", "square"), POSITIONS))
        scene = Scene(shapes, background, "HELLO")
        for seed in range(60):
            assert len(CJK.findall(caption_zh(scene, random.Random(seed)))) <= 46
            en = caption_en(scene, random.Random(seed))
            assert len(en.split()) <= 40 and len(en) <= 250


def test_captions_are_varied_and_deterministic():
    scene = scenes(1, seed=9)[0]
    en = {caption_en(scene, random.Random(s)) for s in range(200)}
    zh = {caption_zh(scene, random.Random(s)) for s in range(200)}
    assert len(en) >= 6 and len(zh) >= 5
    assert caption_en(scene, random.Random(1)) == caption_en(scene, random.Random(1))
    assert caption_zh(scene, random.Random(1)) == caption_zh(scene, random.Random(1))


def test_articles_agree_with_colours():
    scene = Scene((Shape("star", "orange", "left"), Shape("ring", "red", "top")), "grey", None)
    for seed in range(50):
        text = caption_en(scene, random.Random(seed))
        assert "an orange star" in text.lower() and "a red ring" in text.lower() and " a orange" not in text
