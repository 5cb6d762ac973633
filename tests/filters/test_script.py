import pickle

import pytest

from vlcurate.filters.registry import build_step
from vlcurate.filters.script import ScriptFilter
from vlcurate.schemas.errors import ConfigError
from vlcurate.schemas.record import Pair


def run(step: ScriptFilter, text: str) -> tuple[float, str | None]:
    pair = Pair(uid="s/1", source="s", caption=text)
    step.apply(pair)
    return pair.scores["n_disallowed"], pair.reject


DEFAULT = ScriptFilter()

CASES = [
    # English, with the punctuation and symbols English captions use
    ("A dog running on the beach", 0, None),
    ("Hi there, I'm Abby – a delicate kitty…", 0, None),
    ("“Curly quotes” and ‘single’ • bullets — dashes", 0, None),
    ("© 2019 Getty Images", 0, None),
    ("Nike® Air Max™ shoes, £45 or €50", 0, None),
    ("Oven at 180°C, 10×20 cm, ½ cup", 0, None),
    ("Temperature 25℃ № 5", 0, None),
    ("★★★★☆ five star review ✓", 0, None),
    # Chinese: ideographs, CJK punctuation, full-width forms
    ("北京天安门广场", 0, None),
    ("上海外滩夜景，美丽的城市。", 0, None),
    ("《红楼梦》【精装版】、全新", 0, None),
    ("价格：１２３元（含税）！", 0, None),
    ("㐀㐁 extension A", 0, None),
    ("iPhone 15 手机壳 透明", 0, None),
    ("東京", 0, None),  # kanji only: allowed (indistinguishable from Chinese by script)
    # emoji are the emoji step's business, not a script
    ("Party time 🎉👨‍👩‍👧 🇯🇵 1️⃣ 👍🏽", 0, None),
    # everything else is dropped
    ("東京タワーの夜景", 4, "disallowed_script"),  # kana
    ("ｼﾙﾊﾞｰ half-width kana", 5, "disallowed_script"),
    ("Korean calligraphy 향수", 2, "disallowed_script"),  # Hangul
    ("Купить Narcos", 6, "disallowed_script"),  # Cyrillic
    ("Greek ΑΒΓ letters", 3, "disallowed_script"),
    ("يا روح Embroidered Polo", 5, "disallowed_script"),  # Arabic
    ("Thai ดอกไม้", 6, "disallowed_script"),
    ("Café au lait", 1, "disallowed_script"),  # accented Latin: not English, by default
    ("Bogotá River, Colombia", 1, "disallowed_script"),
    ("broken � text", 1, "disallowed_script"),  # replacement character
    ("ctrl\x01char", 1, "disallowed_script"),
]


@pytest.mark.parametrize(("text", "count", "reason"), CASES)
def test_default_allowed_set(text, count, reason):
    assert run(DEFAULT, text) == (count, reason)


def test_latin_accents_option():
    step = ScriptFilter(allow_latin_accents=True)
    assert run(step, "Café au lait, Bogotá, Düsseldorf, Łódź, Việt Nam") == (0, None)
    assert run(step, "Купить") == (6, "disallowed_script")


def test_symbols_option():
    step = ScriptFilter(allow_symbols=False)
    assert run(step, "© 2019 Getty") == (0, None)  # © is also an emoji code point: left to `emoji`
    assert run(step, "£45 or 10×20") == (2, "disallowed_script")


def test_extra_ranges():
    step = ScriptFilter(extra_ranges=["0370-03FF", "U+00E9"])
    assert run(step, "Greek ΑΒΓ café") == (0, None)
    assert run(step, "naïve") == (1, "disallowed_script")
    assert step.params()["extra_ranges"] == ["0370-03FF", "U+00E9"]


def test_max_disallowed():
    assert run(ScriptFilter(max_disallowed=1), "Café") == (1, None)


@pytest.mark.parametrize("bad", ["zzzz", "0400-", "110000", "0500-0400"])
def test_bad_ranges_fail_at_startup(bad):
    with pytest.raises(ConfigError):
        build_step("script", {"extra_ranges": [bad]})


def test_pickles():
    step = pickle.loads(pickle.dumps(ScriptFilter(extra_ranges=["0370-03FF"])))
    assert run(step, "ΑΒΓ abc") == (0, None)
