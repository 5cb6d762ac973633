import pickle
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from py3langid import langid

from vlcurate.filters import language
from vlcurate.filters.language import LanguageTag, identify_language
from vlcurate.schemas.record import Pair

# 10,000 real web alt texts vendored with the tests (tests/data/README.md); a missing file fails the test.
WEB_CAPTIONS = Path(__file__).resolve().parents[1] / "data" / "web_captions_10k.parquet"

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
    assert pickle.loads(data).params() == {"allowed": ["en"], "candidates": ["en", "zh"]}


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


def test_candidates_match_py3langid_set_languages():
    from py3langid import langid

    reference = langid.LanguageIdentifier.from_model_file(langid.MODEL_FILE, norm_probs=True)
    reference.set_languages(["en", "zh", "wuu", "yue"])
    texts = pq.read_table(WEB_CAPTIONS, columns=["TEXT"]).column("TEXT").to_pylist()[:500]
    model = language._model()
    for text in texts:
        probs = model.label_probs(text, frozenset({"en", "zh"}))
        if probs is None:
            continue
        for name, prob in reference.rank(text):
            assert abs(probs[model.label_index[name]] - prob) < 1e-4, text


def test_unknown_candidates_fail_at_startup():
    from vlcurate.filters.registry import build_step
    from vlcurate.schemas.errors import ConfigError

    with pytest.raises(ConfigError):
        build_step("language", {"candidates": ["en", "klingon"]})


def test_fast_path_matches_py3langid():
    # The reimplemented inference must give py3langid's own probabilities.
    model = language._model()
    assert model.fast
    texts = pq.read_table(WEB_CAPTIONS, columns=["TEXT"]).column("TEXT").to_pylist()[:1500]
    texts += ["北京天安门广场", "Собака на пляже", "Oʻzbek tili", "Srpski jezik", "THE QUICK BROWN FOX"]
    identifier = langid.LanguageIdentifier.from_model_file(langid.MODEL_FILE, norm_probs=True)
    for text in texts:
        ours = model.label_probs(text)
        if ours is None:
            continue
        theirs = dict(identifier.rank(text))
        assert np.abs(ours - np.array([theirs[lab] for lab in model.labels])).max() < 1e-4, text


def test_laid_out_model_is_cached_and_a_broken_cache_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("VLCURATE_CACHE", str(tmp_path))
    built = language._cached_arrays()
    (cached,) = tmp_path.iterdir()  # the temporary folder is gone
    loaded = language._cached_arrays()  # now memory-mapped from the folder
    assert sorted(built) == sorted(loaded) == ["classes", "nextmove", "output", "ptc", "rowbase"]
    assert isinstance(loaded["ptc"], np.memmap)
    for name in built:
        assert np.array_equal(built[name], loaded[name]), name
    (cached / "ptc.npy").write_bytes(b"not an npy")
    rebuilt = language._cached_arrays()
    assert np.array_equal(rebuilt["ptc"], built["ptc"])
    assert [p.name for p in tmp_path.iterdir()] == [cached.name]
    assert np.load(cached / "ptc.npy").shape == built["ptc"].shape  # rewritten
