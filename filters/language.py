"""Language tag (and optional language filter) with py3langid, whose model ships inside the wheel.

`pair.lang` gets the most probable language and `scores["lang_prob"]` its probability (py3langid's
normalized probabilities). Two adjustments for an English/Chinese corpus:
- py3langid tells Wu (`wuu`) and Cantonese (`yue`) from Mandarin; written captions in Han characters are
  all Chinese to us, so when the model's best label is one of the three the tag is `zh` and `lang_prob`
  their summed probability.
- a caption whose letters are mostly CJK ideographs and that holds no kana or Hangul is `zh`, even when
  the model prefers Japanese for a kanji-only text ("東京"); `lang_prob` is then the model's `zh` share.
  Conversely a caption without any CJK ideograph is never `zh` (the next best label is taken).
`lang_prob` is always the model's probability of the reported label (never renormalized by these rules).
A caption without any feature the model knows (digits and punctuation only) is `und` with probability 0.
With the default candidates {en, zh}, a caption with letters but no Han character can only be `en`
(written Chinese needs Han characters), so it is tagged `en` with probability 1 without running the model.

`candidates` restricts the answer to some labels, like py3langid's `set_languages` (probabilities
renormalized over them): the full model has 142 labels and tags a good share of short English product
captions as Nigerian Pidgin (`pcm`), Luxembourgish or Latin; ["en", "zh"] asks only "English or Chinese?".

The model, its fast inference (the same probabilities as py3langid's) and its on-disk cache are
model/language_id.py; this module holds only the rules above and the step. The model is loaded once per
process, lazily: steps stay small and picklable (Beam ships them to workers) and never hold it.
"""

from __future__ import annotations

import regex

from vlcurate.filters.base import Step, reject, string_list
from vlcurate.filters.length import cjk_counts, is_chinese
from vlcurate.model.language_id import LABEL_GROUPS, language_model
from vlcurate.schemas.record import Pair

UNDETERMINED = "und"
_KANA_HANGUL = regex.compile(r"[\p{Hiragana}\p{Katakana}\p{Hangul}]")


def identify_language(text: str, candidates: frozenset[str] | None = None) -> tuple[str, float]:
    """(language code, probability) for `text`, among `candidates` when given (reported labels such as
    "en", "zh"); see the module docstring for `zh` and `und`."""
    n_cjk, n_letters = cjk_counts(text)
    if (
        n_cjk == 0
        and candidates is not None
        and "en" in candidates
        and candidates <= _EN_ZH
        and _ANY_LETTER.search(text) is not None  # no letters at all stays `und`, as the model says
    ):
        # Written Chinese needs Han characters (below), so among {en, zh} only English remains: the
        # model could not change the answer, and skipping it makes the default tagging ~30x cheaper.
        return "en", 1.0
    model = language_model()
    probs = model.label_probs(text, candidates)
    if probs is None:
        return UNDETERMINED, 0.0
    chinese_ok = candidates is None or "zh" in candidates
    if chinese_ok and n_cjk and is_chinese(n_cjk, n_letters) and _KANA_HANGUL.search(text) is None:
        lang = "zh"
    else:
        # The model's own best label decides (folding first would hand unsure, near-uniform answers to
        # `zh`, which sums three labels' shares); written Chinese needs Han characters.
        best = int(probs.argmax())
        if n_cjk == 0 and best in model.chinese:
            probs = probs.copy()
            probs[model.members["zh"]] = 0.0
            best = int(probs.argmax())
        lang = LABEL_GROUPS.get(model.labels[best], model.labels[best])
    members = model.members[lang]
    prob = float(probs[members[0]]) if len(members) == 1 else float(probs[members].sum())
    return lang, round(prob, 4)


_EN_ZH = frozenset({"en", "zh"})
_ANY_LETTER = regex.compile(r"\p{L}")


class LanguageTag(Step):
    """Tags `lang` and `scores.lang_prob` with py3langid; with `allowed`, drops other languages.

    With `allowed` (e.g. ["en", "zh"]), a pair whose language is not in the list is rejected as `language`; the default None only tags. With `min_prob`, so is a pair whose language the model is less sure of. The paper keeps
    English and Chinese, but its script filter already enforces that; tagging feeds per-language CLIP
    models and thresholds (docs/architecture.md, "CLIP scoring"). `candidates` restricts the labels the model
    chooses from; the default ["en", "zh"] matches what the script filter lets through (on short English
    captions the full label set often answers pcm, lb or la, which would pick the wrong CLIP threshold).
    `candidates: null` uses all of py3langid's labels, e.g. with `allowed` to drop other Latin-script
    languages."""

    name = "language"
    reasons = ("language",)
    score_names = ("lang_prob",)
    histograms = {"lang_prob": (0.0, 1.0, 20)}
    what_if = {"min_prob": ("lang_prob", "min")}
    default_sources = {
        "candidates": "vlcurate default: what the `script` step lets through",
        "min_prob": "0: every caption keeps the language the model names; raise it to drop unsure ones",
    }

    def __init__(
        self,
        allowed: list[str] | None = None,
        candidates: list[str] | None = ("en", "zh"),
        min_prob: float = 0.0,
    ) -> None:
        if not isinstance(min_prob, (int, float)) or isinstance(min_prob, bool) or not 0.0 <= min_prob <= 1.0:
            raise ValueError(f"language.min_prob must be a number in [0, 1], not {min_prob!r}.")
        self.min_prob = min_prob
        self.allowed = None if allowed is None else string_list(allowed, "allowed")
        self.candidates = None if candidates is None else string_list(candidates, "candidates")
        self._allowed = None if allowed is None else frozenset(allowed)
        self._candidates = None if candidates is None else frozenset(self.candidates)
        if self._candidates is not None:  # checking the names needs the model: loaded here, once
            unknown = self._candidates - language_model().reported_labels()
            if unknown or not self._candidates:
                raise ValueError(f"candidates {sorted(unknown)} are not labels of the language model")

    def apply(self, pair: Pair) -> None:
        pair.lang, prob = identify_language(pair.caption, self._candidates)
        pair.scores["lang_prob"] = prob
        if (self._allowed is not None and pair.lang not in self._allowed) or prob < self.min_prob:
            reject(pair, "language")

    def what_if_value(self, param: str, pair: Pair) -> float | None:
        if self._allowed is not None and pair.lang not in self._allowed:
            return None  # dropped for its language, however sure the model is
        return pair.scores.get("lang_prob")
