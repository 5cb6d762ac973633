"""CLIP steps: which model scores a pair (per source and caption language), and the threshold filter.

The scoring itself needs weights and a GPU, so the pipeline runs it through RunInference
(pipelines/clip.py); these classes are its configuration and the pure keep/drop decision.

Default thresholds are LAION's, for OpenAI CLIP ViT-B/32 cosine similarity: 0.28 for English (LAION-5B
en), 0.26 for other languages (LAION-5B multilingual); LAION-400M used 0.30. They only make sense for that
model: name a threshold that fits yours, or use `keep_fraction` (DataComp's CLIP filter keeps the top 30%
by ViT-L/14 score) to turn a kept share into a per-source threshold from the score distribution.
"""

from __future__ import annotations

import math
import os
from typing import Any, ClassVar

from vlcurate.filters.base import Step, reject
from vlcurate.schemas.model_spec import DEFAULT_BUNDLED, ModelSpec, absolute_model_spec
from vlcurate.schemas.record import Pair

LAION_THRESHOLDS = {"en": 0.28, "default": 0.26}


def _per_language(value: Any) -> dict[str, Any]:
    """A scalar applies to every language; a mapping must give `default` or the languages it names."""
    if isinstance(value, dict):
        return dict(value)
    return {"default": value}


def _for_language(table: dict[str, Any], lang: str | None) -> Any:
    if lang in table:
        return table[lang]
    return table.get("default")


class ClipScore(Step):
    """Scores caption-image agreement with an open_clip model per caption language, in RunInference.

    Runs through RunInference over batches of survivors, not per record. Undecodable images are
    rejected as `image_undecodable` there (pipelines/clip.py).

    `models` maps caption language to a model spec (see model/clip_models.py), with `default` for the
    rest: English and Chinese captions need different CLIP models (e.g. a multilingual one for zh).
    """

    name = "clip_score"
    reasons = ("image_undecodable",)  # given by pipelines/clip.py, which decodes for the model
    needs_image = True
    runs_on_survivors = True
    score_names = ("clip",)  # written by pipelines/clip.py
    default_sources = {
        "models": "vlcurate default: the bundled tiny CLIP works offline; real runs name a model"
    }

    def __init__(
        self,
        models: str | dict[str, str] = DEFAULT_BUNDLED,
        batch_size: int = 256,
        device: str = "auto",
        gpu_decode: bool = True,
        draft: bool = True,
        compile: bool = False,
        precision: str = "bf16",
        decode_threads: int | None = None,
        overlap: bool = True,
        share_model: bool = False,
    ) -> None:
        # Made absolute here, at launch: workers load the model elsewhere, from other working directories.
        self.models = {lang: absolute_model_spec(spec) for lang, spec in _per_language(models).items()}
        if "default" not in self.models:
            raise ValueError("clip_score.models needs a `default` entry for languages it does not name.")
        for spec in self.models.values():
            ModelSpec.parse(spec)
        if batch_size < 1:
            raise ValueError("clip_score.batch_size must be >= 1.")
        switches = {
            "gpu_decode": gpu_decode,
            "draft": draft,
            "compile": compile,
            "overlap": overlap,
            "share_model": share_model,
        }
        for key, value in switches.items():
            if not isinstance(value, bool):  # YAML's "no" in quotes would otherwise count as true
                raise ValueError(f"clip_score.{key} must be true or false, not {value!r}.")
        if precision not in ("bf16", "fp8"):
            raise ValueError(f"clip_score.precision must be bf16 or fp8, not {precision!r}.")
        self.batch_size, self.device, self.gpu_decode, self.draft = batch_size, device, gpu_decode, draft
        # GPU only. compile: +4% on ViT-L-14 for 20-30 s of start-up per worker (bench/clip_gpu.py), so off
        # by default; fp8: float8 matmuls on Hopper with calibrated static scales (clip_models.py), scores
        # shift by <0.01 (bench/clip_gpu.py paths); fastest with compile.
        self.compile, self.precision = compile, precision
        if decode_threads is not None and decode_threads < 1:
            raise ValueError("clip_score.decode_threads must be >= 1 (or null: one per core, at most 16).")
        self.decode_threads = decode_threads
        # GPU: keep one batch computing while the worker's CPU moves the last one on (pipelines/clip.py).
        self.overlap = overlap
        # One model per machine, called by all its worker processes (model/clip_handler.py); a call returns
        # its batch's scores, so there is no batch in flight for `overlap` to hold.
        self.share_model = share_model

    def threads(self) -> int:
        """Threads that decode images on the CPU in each worker (PIL releases the GIL while decoding)."""
        return self.decode_threads or min(16, os.cpu_count() or 1)

    def specs(self) -> list[str]:
        return [str(ModelSpec.parse(spec)) for spec in self.models.values()]

    def model_for(self, pair: Pair) -> str:
        return str(ModelSpec.parse(_for_language(self.models, pair.lang)))

    def apply(self, pair: Pair) -> None:
        raise RuntimeError("clip_score runs through RunInference in the pipeline, not per record")


class ClipFilter(Step):
    """Drops pairs whose CLIP score is below the threshold of their caption language or source.

    Reason `clip_low_score`, or `clip_no_score` when the pair has no CLIP score. Give either `threshold`
    (a number, or {language: number, default: number}) or `keep_fraction` (the share to keep, by score: a
    number, or {language: share, default: share}); the pipeline turns each fraction into a threshold per
    source and language group from the scores (pipelines/clip.py, keep_fraction_thresholds). A source's
    own setting replaces the global one, so a global `threshold` and a source's `keep_fraction` mix.
    """

    name = "clip_filter"
    reasons = ("clip_low_score", "clip_no_score")
    needs_image = True
    needs = {"clip_score": "CLIP scores"}  # or the input's own (build_chain checks which)
    # Read, not written: with clip_score disabled it decides on the `clip` score the input carries.
    score_names = ("clip",)
    # Cosines of real CLIP models sit in about [0, 0.5]; the tiny synthetic one reaches 0.95.
    histograms: ClassVar[dict[str, tuple[float, float, int]]] = {"clip": (-0.5, 1.0, 75)}
    what_if: ClassVar[dict[str, tuple[str, str]]] = {"threshold": ("clip", "min")}
    exclusive_params = (("threshold", "keep_fraction"),)
    default_sources = {
        "threshold": "null: LAION-5B's 0.28 for English, 0.26 for other languages, as OpenAI ViT-B/32 cosines",
    }

    def __init__(
        self,
        threshold: float | dict[str, float] | None = None,
        keep_fraction: float | dict[str, float] | None = None,
    ) -> None:
        if threshold is not None and keep_fraction is not None:
            raise ValueError("give clip_filter either `threshold` or `keep_fraction`, not both.")
        self.keep_fraction = None if keep_fraction is None else _per_language(keep_fraction)
        for share in (self.keep_fraction or {}).values():
            if not isinstance(share, (int, float)) or not 0.0 < share <= 1.0:
                raise ValueError(f"clip_filter.keep_fraction must be in (0, 1], not {share!r}.")
        if self.keep_fraction is not None and "default" not in self.keep_fraction:
            raise ValueError(
                "clip_filter.keep_fraction needs a `default` entry for languages it does not name."
            )
        # With keep_fraction the thresholds come from the data (with_computed_threshold).
        self.threshold = None
        if self.keep_fraction is None:
            self.threshold = _per_language(LAION_THRESHOLDS if threshold is None else threshold)
            if "default" not in self.threshold:
                raise ValueError(
                    "clip_filter.threshold needs a `default` entry for languages it does not name."
                )

    def params(self) -> dict:
        return {"keep_fraction": self.keep_fraction} if self.keep_fraction else {"threshold": self.threshold}

    def needs_computed_threshold(self) -> bool:
        return self.keep_fraction is not None

    def fraction_group(self, lang: str | None) -> str:
        """Which keep_fraction entry ranks a pair of caption language `lang` (its language or `default`)."""
        return lang if self.keep_fraction and lang in self.keep_fraction else "default"

    def with_computed_threshold(self, value: dict[str, dict[str, Any]]) -> ClipFilter:
        """The filter for one source once its thresholds are known: `value` maps each language group to
        its entry from keep_fraction_thresholds. A group without scored pairs has no pair to filter."""
        if self.keep_fraction is None:
            return self
        thresholds = {group: entry["value"] for group, entry in value.items()}
        return ClipFilter(threshold={"default": math.inf, **thresholds})

    def applied_thresholds(
        self, computed: dict[str, dict[str, Any]] | None = None
    ) -> dict[str, dict[str, Any]]:
        """{language group: {"value", "from", ...}}: the thresholds this filter applies to one source, for
        info.json, stats.json and the report; `computed` as in with_computed_threshold."""
        if self.keep_fraction is None:
            return {
                lang: {"value": value, "from": "threshold"} for lang, value in sorted(self.threshold.items())
            }
        computed = computed or {}
        return {
            group: computed.get(group)
            or {
                "value": None,
                "from": "keep_fraction",
                "keep_fraction": share,
                "quantile": round(1.0 - share, 12),
                "scored": 0,
            }
            for group, share in sorted(self.keep_fraction.items())
        }

    def apply(self, pair: Pair) -> None:
        if self.threshold is None:
            raise RuntimeError("clip_filter with keep_fraction runs with computed thresholds only")
        score = pair.scores.get("clip", math.nan)
        if math.isnan(score):  # clip_score disabled and the input carried no score
            reject(pair, "clip_no_score")
        elif score < _for_language(self.threshold, pair.lang):
            reject(pair, "clip_low_score")
