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

The model is loaded once per process, lazily, into a module-level cache: steps stay small and picklable
(Beam ships them to workers) and never hold it. Inference reimplements py3langid's own computation (byte
n-gram automaton walk, naive Bayes, softmax at temperature sqrt(bytes)) on its arrays, with a float32 copy
of the feature table: it gives the whole distribution faster than `classify` gives one answer (~1.2x) and
~2x faster than `rank()`; a test checks that the probabilities are py3langid's, and `rank()` is used if
the arrays are not where expected.
"""

from __future__ import annotations

import importlib.metadata
import math
import os
import shutil
import threading
import unicodedata
from collections import Counter
from pathlib import Path

import numpy as np
import regex

from vlcurate.filters.base import Step, reject, string_list
from vlcurate.filters.length import cjk_counts, is_chinese
from vlcurate.filters.registry import register
from vlcurate.schemas.record import Pair

# Labels folded into one; see the module docstring.
LABEL_GROUPS = {"wuu": "zh", "yue": "zh"}
UNDETERMINED = "und"
_KANA_HANGUL = regex.compile(r"[\p{Hiragana}\p{Katakana}\p{Hangul}]")


# py3langid unpacks its model (an xz-compressed npz) and we re-lay its feature table on every start,
# ~0.8 s; the laid-out arrays are kept in a cache folder as .npy files and memory-mapped: no copy at
# start, and worker processes share one copy in the page cache. Bump when the layout changes.
_LAYOUT_VERSION = 2
_ARRAYS = ("classes", "nextmove", "rowbase", "output", "ptc")


def _cache_dir() -> Path:
    from py3langid import langid

    model = Path(langid.MODEL_DIR, langid.MODEL_FILE)
    root = os.environ.get("VLCURATE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "vlcurate"
    )
    tag = f"{importlib.metadata.version('py3langid')}-{model.stat().st_size}-{_LAYOUT_VERSION}"
    return Path(root, f"py3langid-{tag}")


def _label_order(columns: list[str], label_index: dict[str, int]) -> list[int]:
    """Feature-table columns reordered so that those of one label are adjacent (one np.add.reduceat)."""
    return sorted(range(len(columns)), key=lambda c: (label_index[columns[c]], c))


def _arrays_from_py3langid() -> dict[str, np.ndarray] | None:
    from py3langid import langid

    ident = langid.LanguageIdentifier.from_model_file(langid.MODEL_FILE, norm_probs=True)
    try:
        columns = list(ident.nb_classes)
        order = _label_order(columns, {lab: i for i, lab in enumerate(dict.fromkeys(columns))})
        ptc = np.asarray(ident.nb_ptc)
        table = np.empty((ptc.shape[0] + 1, len(columns)), dtype=np.float32)
        table[:-1] = ptc[:, order]
        table[-1] = np.asarray(ident.nb_pc)[order]
        arrays = {
            "classes": np.array(columns),
            "nextmove": np.asarray(ident.tk_nextmove, dtype=np.uint32),
            "rowbase": np.asarray(ident.tk_row, dtype=np.int64) << 8,
            "output": np.asarray(ident.tk_output, dtype=np.int64),
        }
        arrays["ptc"] = table
    except (AttributeError, IndexError, TypeError, ValueError):
        return None
    if len(arrays["rowbase"]) != len(arrays["output"]) or ptc.shape[1] != len(columns):
        return None
    return arrays


def _cached_arrays() -> dict[str, np.ndarray] | None:
    """The laid-out model arrays, from the cache when it holds them (else built and saved, best effort);
    None when py3langid's arrays are not where expected."""
    folder = _cache_dir()
    try:
        return {name: np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False) for name in _ARRAYS}
    except (OSError, ValueError):
        pass
    arrays = _arrays_from_py3langid()
    if arrays is not None:
        tmp = folder.with_name(f"{folder.name}.{os.getpid()}.tmp")
        try:
            tmp.mkdir(parents=True, exist_ok=True)
            for name in _ARRAYS:
                np.save(tmp / f"{name}.npy", arrays[name], allow_pickle=False)
            shutil.rmtree(folder, ignore_errors=True)  # a broken cache
            os.replace(tmp, folder)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)  # an unwritable cache only costs start-up time
    return arrays


class _Model:
    """py3langid's model, with arrays laid out for fast single-caption inference."""

    def __init__(self) -> None:
        arrays = _cached_arrays()
        self.identifier = None
        if arrays is None:  # a py3langid without the expected arrays: its public API instead
            from py3langid import langid

            self.identifier = langid.LanguageIdentifier.from_model_file(langid.MODEL_FILE, norm_probs=True)
            arrays = {"classes": list(self.identifier.nb_classes)}
        self.fast = self.identifier is None
        columns = [str(c) for c in arrays["classes"]]
        self.classes = columns
        # py3langid's labels (it lists some twice, e.g. Serbian in two scripts, and sums those).
        self.labels = list(dict.fromkeys(columns))
        self.label_index = {lab: i for i, lab in enumerate(self.labels)}
        order = _label_order(columns, self.label_index)
        self.starts = np.array(
            [i for i, c in enumerate(order) if i == 0 or columns[c] != columns[order[i - 1]]]
        )
        self.order = order
        self.chinese = frozenset(i for i, lab in enumerate(self.labels) if LABEL_GROUPS.get(lab, lab) == "zh")
        self._excluded: dict[frozenset[str], np.ndarray] = {}
        # Reported label -> indices of the labels summed into it (LABEL_GROUPS: zh <- zh, wuu, yue).
        self.members = {
            name: [self.label_index[lab] for lab in self.labels if LABEL_GROUPS.get(lab, lab) == name]
            for name in {LABEL_GROUPS.get(lab, lab) for lab in self.labels}
        }
        if self.fast:
            self.nextmove = memoryview(np.ascontiguousarray(arrays["nextmove"], dtype=np.uint32))
            self.rowbase = arrays["rowbase"].tolist()
            self.output = arrays["output"].tolist()
            # Feature table (columns in `order`) in float32 with the class priors as its last row, so that
            # one matrix product gives the scores.
            self.ptc = arrays["ptc"]
            self.prior_row = len(self.ptc) - 1
            self.log1p = [math.log1p(n) for n in range(256)]

    def reported_labels(self) -> set[str]:
        """Every label identify_language can answer (LABEL_GROUPS applied), `und` aside."""
        return set(self.members)

    def excluded_columns(self, candidates: frozenset[str] | None) -> np.ndarray | None:
        """Feature-table columns (in self.order) outside `candidates` (reported labels), cached."""
        if candidates is None:
            return None
        excluded = self._excluded.get(candidates)
        if excluded is None:
            columns = [self.classes[c] for c in self.order]
            excluded = np.array(
                [i for i, c in enumerate(columns) if LABEL_GROUPS.get(c, c) not in candidates]
            )
            self._excluded[candidates] = excluded
        return excluded

    def label_probs(self, text: str, candidates: frozenset[str] | None = None) -> np.ndarray | None:
        """py3langid's probability per label (self.labels), or None when the text has no known feature.
        With `candidates`, the other labels get 0 and the rest is renormalized."""
        if not self.fast:
            ranked = dict(self.identifier.rank(text))
            if len(set(ranked.values())) == 1:
                return None
            probs = np.array([ranked[lab] for lab in self.labels])
            if candidates is not None:
                probs *= np.array([LABEL_GROUPS.get(lab, lab) in candidates for lab in self.labels])
                probs /= probs.sum()
            return probs
        if text.isupper():  # as py3langid does: all-caps text is scored in lower case
            text = text.lower()
        if not text.isascii():
            text = unicodedata.normalize("NFC", text)
        data = text.encode("utf-8", errors="surrogatepass")
        nextmove, rowbase, output = self.nextmove, self.rowbase, self.output
        state, features = 0, []
        append = features.append
        for byte in data:
            state = nextmove[rowbase[state] + byte]
            feature = output[state]
            if feature >= 0:
                append(feature)
        if not features:
            return None
        counts = Counter(features)
        # Naive Bayes: sum of log1p(count) * log P(feature | class) + log prior, divided by sqrt(bytes)
        # (py3langid's temperature for normalized probabilities); the division goes into the weights.
        scale = 1.0 / math.sqrt(len(data))
        log1p = self.log1p
        weights = [(log1p[n] if n < 256 else math.log1p(n)) * scale for n in counts.values()]
        weights.append(scale)
        scores = np.array(weights, dtype=np.float32) @ self.ptc.take([*counts, self.prior_row], axis=0)
        if candidates is not None:
            scores[self.excluded_columns(candidates)] = -np.inf  # naive Bayes classes are independent
        scores -= scores.max()  # softmax, in place: a handful of numpy calls is most of the cost here
        np.exp(scores, out=scores)
        folded = np.add.reduceat(scores, self.starts)
        folded /= folded.sum()
        return folded


_MODEL: _Model | None = None
_MODEL_LOCK = threading.Lock()


def _model() -> _Model:
    global _MODEL
    if _MODEL is None:
        with _MODEL_LOCK:
            if _MODEL is None:
                _MODEL = _Model()
    return _MODEL


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
    model = _model()
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


@register
class LanguageTag(Step):
    """Sets `pair.lang` and `scores["lang_prob"]`. With `allowed` (e.g. ["en", "zh"]), a pair whose
    language is not in the list is rejected as `language`; the default None only tags. The paper keeps
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

    def __init__(self, allowed: list[str] | None = None, candidates: list[str] | None = ("en", "zh")) -> None:
        self.allowed = None if allowed is None else string_list(allowed, "allowed")
        self.candidates = None if candidates is None else string_list(candidates, "candidates")
        self._allowed = None if allowed is None else frozenset(allowed)
        self._candidates = None if candidates is None else frozenset(self.candidates)
        if self._candidates is not None:  # checking the names needs the model: loaded here, once
            unknown = self._candidates - _model().reported_labels()
            if unknown or not self._candidates:
                raise ValueError(f"candidates {sorted(unknown)} are not labels of the language model")

    def apply(self, pair: Pair) -> None:
        pair.lang, prob = identify_language(pair.caption, self._candidates)
        pair.scores["lang_prob"] = prob
        if self._allowed is not None and pair.lang not in self._allowed:
            reject(pair, "language")
