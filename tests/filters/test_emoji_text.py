import random

import emoji
import pytest

from vlcurate.filters.emoji_text import EmojiFilter, count_emoji
from vlcurate.schemas.record import Pair

TEXT_SYMBOLS = {"©", "®", "™"}

CASES = [
    ("A dog running on the beach", 0),
    ("Party time 🎉", 1),
    ("family 👨‍👩‍👧 photo", 1),  # ZWJ sequence: one emoji
    ("thumbs 👍🏽 up", 1),  # skin tone
    ("woman 🙋🏾‍♀️ waving", 1),  # skin tone inside a ZWJ sequence
    ("Tokyo 🇯🇵 trip", 1),  # flag
    ("🇯🇵🇨🇳", 2),
    ("lone 🇯 letter", 0),  # a single regional indicator is not an emoji
    ("step 1️⃣ first", 1),  # keycap
    ("step 1⃣ unqualified", 1),
    ("#️⃣ hash keycap", 1),
    ("England 🏴󠁧󠁢󠁥󠁮󠁧󠁿 flag", 1),  # tag sequence
    ("I ♥ NY", 1),  # text-style heart: an emoji to the `emoji` package
    ("I ❤️ NY", 1),
    ("♂ Amazing nature", 1),
    ("★ five star ☆", 0),  # not emoji
    ("© 2019 Getty Images", 0),  # see count_text_symbols
    ("Nike® Air Max™", 0),
    ("©️ emoji-style copyright", 1),  # explicit emoji presentation counts
    ("北京 😀😀😀", 3),
    ("1234 #hashtag *star*", 0),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_count_emoji(text, expected):
    assert count_emoji(text) == expected


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_count_text_symbols_matches_emoji_package(text, expected):
    assert count_emoji(text, count_text_symbols=True) == emoji.emoji_count(text)


def test_agrees_with_emoji_package_on_all_its_emoji():
    mismatches = []
    for key in emoji.EMOJI_DATA:
        text = f"word {key} word"
        want = emoji.emoji_count(text)
        if count_emoji(text, count_text_symbols=True) != want:
            mismatches.append(key)
        # the one documented difference: bare ©, ®, ™
        if count_emoji(text) != (0 if key in TEXT_SYMBOLS else want):
            mismatches.append(key)
    assert mismatches == []


def test_agrees_with_emoji_package_on_adjacent_emoji():
    # Emoji glued together are where a sequence pattern can over- or under-join (skin tones, ZWJ).
    keys = sorted(emoji.EMOJI_DATA)
    rng = random.Random(0)
    for _ in range(3000):
        a, b, c = rng.sample(keys, 3)
        text = f"x{a}{b} y {c}z"
        assert count_emoji(text, count_text_symbols=True) == emoji.emoji_count(text), text


def test_filter_reason_and_threshold():
    pair = Pair(uid="s/1", source="s", caption="Sunset 🌅 at the beach")
    EmojiFilter().apply(pair)
    assert (pair.scores["n_emoji"], pair.reject) == (1, "emoji")
    pair = Pair(uid="s/1", source="s", caption="Sunset 🌅 at the beach")
    EmojiFilter(max_emoji=1).apply(pair)
    assert pair.reject is None
    pair = Pair(uid="s/1", source="s", caption="© Getty")
    EmojiFilter(count_text_symbols=True).apply(pair)
    assert pair.reject == "emoji"
