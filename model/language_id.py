"""py3langid's language-ID model, laid out for fast single-caption inference and cached on disk.

py3langid's model ships inside its wheel. `LanguageModel.label_probs` reimplements py3langid's own
computation (byte n-gram automaton walk, naive Bayes, softmax at temperature sqrt(bytes)) on its arrays,
with a float32 copy of the feature table: it gives the whole distribution faster than `classify` gives one
answer (~1.2x) and ~2x faster than `rank()`; a test checks that the probabilities are py3langid's, and
`rank()` is used if the arrays are not where expected.

The model is loaded once per process, lazily (`language_model()`), into a module-level cache, and its
laid-out arrays are kept in a cache folder (docs/outputs.md, "Outside the output directory"). This is the
model and its files; filters/language.py is the step that tags captions with it (and the rules for `zh`).
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

# py3langid's labels reported as one: written captions in Han characters are all Chinese to us, whether
# the model says Mandarin, Wu (`wuu`) or Cantonese (`yue`); see filters/language.py.
LABEL_GROUPS = {"wuu": "zh", "yue": "zh"}


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


def cached_arrays() -> dict[str, np.ndarray] | None:
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


class LanguageModel:
    """py3langid's model, with arrays laid out for fast single-caption inference."""

    def __init__(self) -> None:
        arrays = cached_arrays()
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


_MODEL: LanguageModel | None = None
_MODEL_LOCK = threading.Lock()


def language_model() -> LanguageModel:
    """The process-wide model: loaded once, lazily, so that the steps using it stay small and picklable."""
    global _MODEL
    if _MODEL is None:
        with _MODEL_LOCK:
            if _MODEL is None:
                _MODEL = LanguageModel()
    return _MODEL
