import pickle

import pytest

from vlcurate.filters.language import LanguageTag, identify_language
from vlcurate.schemas.record import Pair

CASES = [
    ("A dog running on the beach", "en"),
    ("Ein Hund läuft am Strand entlang", "de"),
    ("Un chien qui court sur la plage", "fr"),
    ("北京天安门广场", "zh"),
    ("上海外滩夜景，美丽的城市", "zh"),
    ("我爱北京天安门 Beijing", "zh"),
    ("東京", "zh"),  # Han only, no kana: Chinese by script
    ("东京タワーの夜景", "ja"),  # kana: the model decides
    ("안녕하세요 서울", "ko"),
    ("Sammy Davis, Jr. 歌手頭像", "zh"),  # the model says Cantonese
    ("Pat No Pay", "la"),  # unsure: three Chinese labels' shares must not add up to a win
    ("12345", "zxx"),  # the model's "no linguistic content"
    ("", "und"),
]


@pytest.mark.parametrize(("text", "lang"), CASES)
def test_identify_language(text, lang):
    found, prob = identify_language(text)
    assert found == lang
    assert 0.0 <= prob <= 1.0


def test_tags_and_filters():
    pair = Pair(uid="s/1", source="s", caption="A dog running on the beach")
    LanguageTag().apply(pair)
    assert pair.lang == "en" and pair.scores["lang_prob"] > 0.9 and pair.reject is None
    pair = Pair(uid="s/1", source="s", caption="Ein Hund läuft am Strand entlang")
    LanguageTag(allowed=["en", "zh"], candidates=None).apply(pair)
    assert pair.lang == "de" and pair.reject == "language"
    pair = Pair(uid="s/1", source="s", caption="Ein Hund läuft am Strand entlang")
    LanguageTag(allowed=["en", "zh"]).apply(pair)  # default candidates: only en or zh can come out
    assert pair.lang == "en" and pair.reject is None


def test_step_does_not_carry_the_model():
    step = LanguageTag(allowed=["en"], candidates=["en", "zh"])
    data = pickle.dumps(step)
    assert len(data) < 500
    assert pickle.loads(data).params() == {"allowed": ["en"], "candidates": ["en", "zh"], "min_prob": 0.0}


@pytest.mark.parametrize(
    ("text", "full", "restricted"),
    [
        ("Pat No Pay", "la", "en"),
        ("Ein Hund läuft am Strand entlang", "de", "en"),
        ("北京天安门广场", "zh", "zh"),
        ("Sammy Davis, Jr. 歌手頭像", "zh", "zh"),
    ],
)
def test_candidates(text, full, restricted):
    assert identify_language(text)[0] == full
    assert identify_language(text, frozenset({"en", "zh"}))[0] == restricted


def test_unknown_candidates_fail_at_startup():
    from vlcurate.filters.registry import build_step
    from vlcurate.schemas.errors import ConfigError

    with pytest.raises(ConfigError):
        build_step("language", {"candidates": ["en", "klingon"]})


def test_min_prob_drops_captions_whose_language_the_model_is_unsure_of():
    # Every label a candidate: py3langid's own probabilities (0.99 and 0.015 here).
    sure = Pair(uid="s/1", source="s", caption="A red car parked on a quiet street at night in the city")
    unsure = Pair(uid="s/2", source="s", caption="Pat No Pay")
    step = LanguageTag(candidates=None, min_prob=0.9)
    for pair in (sure, unsure):
        step.apply(pair)
    assert sure.reject is None and sure.scores["lang_prob"] >= 0.9
    assert unsure.reject == "language" and unsure.scores["lang_prob"] < 0.9
    assert step.what_if_value("min_prob", unsure) == unsure.scores["lang_prob"]
    other = Pair(uid="s/3", source="s", caption="红色的汽车停在街上")
    english_only = LanguageTag(allowed=["en"])
    english_only.apply(other)
    assert other.reject == "language" and english_only.what_if_value("min_prob", other) is None
