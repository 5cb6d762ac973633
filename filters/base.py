"""The shape of a step.

A step is a small class built from keyword parameters (its thresholds). Three shapes:
- `Cleaner`: rewrites the caption (`clean(text) -> text`); counted as `changed` when it did.
- `Filter`: a pure `score(pair) -> {name: value}` plus `decide(scores) -> reason | None`.
- `Step` itself for annotators that only add fields (image probe, language tag).
`apply(pair)` runs the step on a record in place; the step engine (filters/runner.py) counts what it did.
Where a step runs is said by its class attributes (`needs_image`, `runs_on_survivors`, `groups_records`),
and the hooks the pipeline calls are declared here with the answer of a plain step. A step is known by
one line of the ordered table in filters/registry.py, which also fixes where it runs.
"""

from __future__ import annotations

import copy
import math
from typing import Any, ClassVar

from vlcurate.schemas.record import Pair


class Step:
    name: ClassVar[str]
    # Reject reasons this step can give, for stats and documentation.
    reasons: ClassVar[tuple[str, ...]] = ()
    # Every score name this step writes into `pair.scores` (or, for a threshold filter, decides on): the
    # fields of the output's `scores` struct, fixed when the pipeline is built so that every Parquet file
    # of a run has one schema (HF datasets loads a directory only then, and has no type for Arrow maps).
    score_names: ClassVar[tuple[str, ...]] = ()
    # Score names with histogram ranges (low, high, bins) for stats.json; a subset of score_names.
    histograms: ClassVar[dict[str, tuple[float, float, int]]] = {}
    # Steps whose output this one filters on: {step name: what it provides, e.g. "CLIP scores"}. Disabling
    # such a step while this one runs would reject (or pass) every pair, so the chain refuses it at start-up.
    needs: ClassVar[dict[str, str]] = {}
    # Where each parameter's default comes from, for the steps table (filters/steps_table.py):
    # {parameter: source}; a parameter not named here is a vlcurate default.
    default_sources: ClassVar[dict[str, str]] = {}

    # Step kinds. `needs_image`: sources without images (image_column: null) run without this step.
    needs_image: ClassVar[bool] = False
    # A model step: the pipeline scores the survivors of every step before it in batches (RunInference),
    # not through apply(); the chain is split there (filters/chain.py, Chain.split).
    runs_on_survivors: ClassVar[bool] = False
    # Compares pairs with each other (dedup): the pipeline runs it after the per-pair chain, not apply().
    groups_records: ClassVar[bool] = False
    # Thresholds with a what-if curve in stats.json (pipelines/whatif.py): {parameter: (score name,
    # "min" when a pair passes at score >= the parameter, "max" at score <= it)}; the score must have a
    # histogram range, which the curve's grid refines.
    what_if: ClassVar[dict[str, tuple[str, str]]] = {}
    # Parameters that stand for one another (a threshold or a fraction to keep): a source that sets one of
    # a group replaces the global value of every other (filters/chain.py, merged_params).
    exclusive_params: ClassVar[tuple[tuple[str, ...], ...]] = ()

    def apply(self, pair: Pair) -> None:
        raise NotImplementedError

    def apply_threads(self) -> int:
        """How many pairs of a batch the step engine may apply this step to at once, in threads. More than
        one only for a step whose apply() touches its own pair alone and spends its time where Python lets
        other threads run (an image decoder)."""
        return 1

    def params(self) -> dict:
        """The step's effective parameters, recorded in info.json."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def what_if_value(self, param: str, pair: Pair) -> float | None:
        """The number threshold `param` is compared with for `pair` (in what_if's direction): +-inf where
        the pair passes this step whatever `param` is, None where it fails the step whatever `param` is
        (on another of its thresholds). A plain step compares the score itself."""
        return pair.scores.get(self.what_if[param][0])

    def needs_computed_threshold(self) -> bool:
        """Whether the pipeline must compute this step's threshold from the data first (a `keep_fraction`):
        the chain is split before it (filters/chain.py, Chain.split)."""
        return False

    def with_computed_threshold(self, value: Any) -> Step:
        """The step for one source once the pipeline has computed its threshold (a `keep_fraction` turned
        into scores, per language group); a step without such a threshold is itself."""
        return self

    def specs(self) -> list[str]:
        """The models this step loads (model specs, recorded in info.json); none for a plain step."""
        return []


class GroupStep(Step):
    """A step that compares pairs with each other (dedup, keep_longest): the pipeline shuffles pairs by
    `group_key` into buckets after every per-pair step (pipelines/group_steps.py); in each group the pair with
    the smallest `rank` stays and `mark_loser` rejects the others. Nothing depends on arrival order."""

    groups_records = True
    # The group key reads the image's digest (kept in its ImageSpan when the bytes are detached).
    needs_image_digest: ClassVar[bool] = False
    # Compares pairs by CLIP image embedding (semantic_dedup): run by pipelines/semantic_groups.py.
    compares_embeddings: ClassVar[bool] = False
    reject_file_prefix: ClassVar[str]  # its rejects: rejects/<prefix>-NNNNN.parquet, one file per bucket

    def apply(self, pair: Pair) -> None:
        raise RuntimeError(
            f"{self.name} compares pairs with each other: the pipeline runs it, not per record"
        )

    def active(self) -> bool:
        """Whether the step can group anything with these parameters; an inactive one adds no shuffle."""
        return True

    def reads_embeddings(self) -> bool:
        """Whether the step reads the CLIP image embeddings of its pairs (clip_score computes them then)."""
        return self.compares_embeddings and self.active()

    def group_key(self, pair: Pair) -> str | None:
        """The pair's group (a hex digest); None: the pair is not grouped and passes."""
        raise NotImplementedError

    def rank(self, pair: Pair) -> tuple:
        """Orders a group: the smallest stays."""
        raise NotImplementedError

    def mark_loser(self, pair: Pair, winner: str) -> None:
        """Rejects `pair`, which lost its group to the pair with uid `winner`."""
        raise NotImplementedError


class Cleaner(Step):
    def clean(self, text: str) -> str:
        raise NotImplementedError

    def apply(self, pair: Pair) -> None:
        set_caption(pair, self.clean(pair.caption))


def set_caption(pair: Pair, cleaned: str) -> None:
    """Sets a cleaned caption. An unchanged one keeps its object: while it is still the input's, it is
    `caption_raw` too, and a batch pickled at a shuffle then holds the text once, not twice."""
    if cleaned != pair.caption:
        pair.caption = cleaned


class Filter(Step):
    def score(self, pair: Pair) -> dict[str, float]:
        raise NotImplementedError

    def decide(self, scores: dict[str, float]) -> str | None:
        raise NotImplementedError

    def apply(self, pair: Pair) -> None:
        scores = self.score(pair)
        pair.scores.update(scores)
        reason = self.decide(scores)
        if reason is not None:
            reject(pair, reason)

    def what_if_value(self, param: str, pair: Pair) -> float | None:
        score, direction = self.what_if[param]
        value = pair.scores.get(score)
        if value is None:
            return None
        loose, tight = (-math.inf, math.inf) if direction == "min" else (math.inf, -math.inf)
        if self._with(param, loose).decide(pair.scores) is not None:
            return None  # another threshold of this step rejects it
        if self._with(param, tight).decide(pair.scores) is None:
            return tight  # `param` does not apply to it (the other branch of a two-branch step)
        return value

    def _with(self, param: str, value: float) -> Filter:
        """This step with `param` set to `value` (kept for the next call)."""
        cache = self.__dict__.setdefault("_variants", {})
        if (param, value) not in cache:
            variant = copy.copy(self)
            variant.__dict__.pop("_variants", None)
            setattr(variant, param, value)
            cache[(param, value)] = variant
        return cache[(param, value)]


def reject(pair: Pair, reason: str) -> None:
    """Marks a pair rejected; a pair already rejected (audit mode) collects the extra reason."""
    if pair.reject is None:
        pair.reject = reason
    else:
        pair.meta.setdefault("audit_reasons", []).append(reason)


def string_list(value: object, what: str) -> list[str]:
    """A config value that must be a list of strings, as a new list; raises ValueError otherwise (the
    registry turns it into a ConfigError at start-up). A bare string is refused: iterating it would make
    a list of its characters."""
    if (
        isinstance(value, str)
        or not isinstance(value, (list, tuple))
        or not all(isinstance(v, str) for v in value)
    ):
        raise ValueError(f"{what} must be a list of strings, got {value!r}")
    return list(value)
