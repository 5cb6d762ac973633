"""The language-ID model (model/language_id.py): py3langid's probabilities, and its on-disk cache."""

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from py3langid import langid

from vlcurate.model.language_id import cached_arrays, language_model

# 10,000 real web alt texts vendored with the tests (tests/data/README.md); a missing file fails the test.
WEB_CAPTIONS = Path(__file__).resolve().parents[1] / "data" / "web_captions_10k.parquet"


def test_candidates_match_py3langid_set_languages():
    reference = langid.LanguageIdentifier.from_model_file(langid.MODEL_FILE, norm_probs=True)
    reference.set_languages(["en", "zh", "wuu", "yue"])
    texts = pq.read_table(WEB_CAPTIONS, columns=["TEXT"]).column("TEXT").to_pylist()[:500]
    model = language_model()
    for text in texts:
        probs = model.label_probs(text, frozenset({"en", "zh"}))
        if probs is None:
            continue
        for name, prob in reference.rank(text):
            assert abs(probs[model.label_index[name]] - prob) < 1e-4, text


def test_fast_path_matches_py3langid():
    # The reimplemented inference must give py3langid's own probabilities.
    model = language_model()
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
    built = cached_arrays()
    (cached,) = tmp_path.iterdir()  # the temporary folder is gone
    loaded = cached_arrays()  # now memory-mapped from the folder
    assert sorted(built) == sorted(loaded) == ["classes", "nextmove", "output", "ptc", "rowbase"]
    assert isinstance(loaded["ptc"], np.memmap)
    for name in built:
        assert np.array_equal(built[name], loaded[name]), name
    (cached / "ptc.npy").write_bytes(b"not an npy")
    rebuilt = cached_arrays()
    assert np.array_equal(rebuilt["ptc"], built["ptc"])
    assert [p.name for p in tmp_path.iterdir()] == [cached.name]
    assert np.load(cached / "ptc.npy").shape == built["ptc"].shape  # rewritten
