"""How a config turns the table of steps into step instances per source.

The table (filters/registry.py) fixes the order: cheap text steps run first, then header-only image
steps, then decoding, so the expensive work only sees survivors (docs/architecture.md, "The flow").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Sequence
from typing import Any

from vlcurate.filters.base import Step
from vlcurate.filters.registry import (
    BUILTIN_STEPS,
    OFF_BY_DEFAULT,
    build_step,
    check_params,
    off_by_default,
    step_class,
    step_names,
)
from vlcurate.schemas.config import CleanConfig, SourceConfig
from vlcurate.schemas.errors import ConfigError, unknown_name_error

# Every built-in step in the order it runs: the table's order (filters/registry.py). Where each runs is
# its class's kind: per pair, the model step on survivors (runs_on_survivors), or over groups of pairs.
DEFAULT_CHAIN: tuple[str, ...] = tuple(BUILTIN_STEPS)
# The step whose image embeddings semantic_dedup compares and output.embeddings stores.
EMBEDDING_STEP = "clip_score"


@dataclasses.dataclass
class Chain:
    """Step names in order, and the step instances for each source (per-source thresholds)."""

    names: list[str]
    by_source: dict[str, list[Step]]
    group_steps: list[str] = dataclasses.field(default_factory=list)
    # {group step: {source: its instance}}, in chain order (a source may turn a group step off)
    groups: dict[str, dict[str, Step]] = dataclasses.field(default_factory=dict)

    def split(self) -> tuple[dict[str, list[Step]], dict[str, Step], dict[str, list[Step]]]:
        """Per source: the steps before the model step, the model step (absent when disabled), and the
        steps after it. The pipeline runs the model step through RunInference, and computes the
        thresholds of steps after it that keep a fraction (`needs_computed_threshold`) from the pairs that
        reach them. Without a model step the split is at the first such step (scores carried by the
        input)."""
        before: dict[str, list[Step]] = {}
        model: dict[str, Step] = {}
        after: dict[str, list[Step]] = {}
        for source, steps in self.by_source.items():
            at = next((i for i, s in enumerate(steps) if s.runs_on_survivors), None)
            if at is None:  # no model step: split where a threshold must be computed from the data first
                computed = next((i for i, s in enumerate(steps) if s.needs_computed_threshold()), None)
                if computed is not None:
                    before[source], after[source] = steps[:computed], steps[computed:]
                    continue
            if at is None:
                before[source], after[source] = steps, []
            else:
                before[source], model[source], after[source] = steps[:at], steps[at], steps[at + 1 :]
        return before, model, after

    def score_names(self) -> list[str]:
        """Every score name the run's steps write or decide on, in chain order: the fields of the
        `scores` struct of each Parquet file the run writes (schemas/arrow.py)."""
        names: dict[str, None] = {}
        for steps in self.by_source.values():
            names.update(dict.fromkeys(name for step in steps for name in step.score_names))
        return list(names)

    def active_groups(self) -> dict[str, dict[str, Step]]:
        """The group steps that can group anything (keep_longest off everywhere, decontaminate without
        sets: none): the pipeline adds no shuffle for the others."""
        return {n: g for n, g in self.groups.items() if any(step.active() for step in g.values())}

    def params(self) -> dict[str, dict[str, dict[str, Any]]]:
        """{source: {step: effective parameters}} for info.json."""
        out = {src: {s.name: s.params() for s in steps} for src, steps in sorted(self.by_source.items())}
        for name, by_source in self.groups.items():
            for src, step in by_source.items():
                out[src][name] = step.params()
        return out


def build_chain(
    config: CleanConfig,
    chain: Sequence[str] | None = None,
    carried: Callable[[SourceConfig], Collection[str]] | None = None,
    cli_disable: Collection[str] = (),
) -> Chain:
    """Validates step names, parameters (global and per source) and what the steps need, then builds them.

    `chain`: the steps to run, in order (default: every step of the table). Raises ConfigError before any
    data is read. `carried(source)`: the score names a source's input already carries (vlcurate's own
    shards), for check_needs; `cli_disable`: the steps --disable named, so that a message shows the fix in
    the form the user wrote.
    """
    chain = step_names() if chain is None else tuple(chain)
    per_pair = [n for n in chain if not step_class(n).groups_records]
    for name in config.disable:
        if name not in chain:
            raise unknown_name_error("step to disable", name, chain, "disable")
    off = off_steps(config, chain)
    names = [n for n in per_pair if n not in config.disable and n not in off]
    text_only = [s.name for s in config.sources if s.image_column is None]
    if text_only:
        if len(text_only) < len(config.sources):
            raise ConfigError(
                f"sources {', '.join(text_only)} have no images (image_column: null) but others do; "
                "clean them in separate runs (the image steps apply to every source of a run)."
            )
        names = [n for n in names if not step_class(n).needs_image]
    for name, params in config.steps.items():
        if name not in chain:
            raise unknown_name_error("step", name, chain, "steps")
        check_params(name, params, f"steps.{name}")
    for source in config.sources:
        for name, params in source.steps.items():
            if name not in chain:
                raise unknown_name_error("step", name, chain, f"source {source.name!r} steps")
            check_params(name, params, f"source {source.name!r} steps.{name}")
    check_off_steps_unset(config, off)
    group_names = [n for n in chain if n not in per_pair and n not in config.disable and n not in off]
    if text_only:
        group_names = [n for n in group_names if not step_class(n).needs_image]
    groups = {
        n: {
            s.name: build_step(
                n, merged_params(n, config.steps.get(n, {}), s.steps.get(n, {})), f"source {s.name!r}"
            )
            for s in config.sources
        }
        for n in group_names
    }
    # A group step that can group nothing (decontaminate without sets) needs nothing either.
    active = [n for n in group_names if any(step.active() for step in groups[n].values())]
    check_embeddings_taken(names, {n: groups[n] for n in active}, config, cli_disable)
    check_needs(names + active, config, carried, cli_disable)
    by_source: dict[str, list[Step]] = {}
    for source in config.sources:
        by_source[source.name] = [
            build_step(
                n,
                merged_params(n, config.steps.get(n, {}), source.steps.get(n, {})),
                f"source {source.name!r}",
            )
            for n in names
        ]
    check_shared_params(groups)
    check_hashes_taken(by_source, groups)
    return Chain(names, by_source, group_names, groups)


def off_steps(config: CleanConfig, chain: Sequence[str]) -> set[str]:
    """The steps of `chain` that are off by default (filters/registry.py OFF_BY_DEFAULT) and that the
    config's `enable` does not name; refuses names `enable` cannot take."""
    for name in config.enable:
        if name not in chain:
            raise unknown_name_error("step to enable", name, chain, "enable")
        if not off_by_default(name):
            raise ConfigError(
                f"enable: {name} is on by default; enable names steps that are off by default "
                f"({', '.join(sorted(OFF_BY_DEFAULT))})"
            )
    return {n for n in chain if off_by_default(n) and n not in config.enable}


def check_off_steps_unset(config: CleanConfig, off: Collection[str]) -> None:
    """Parameters of a step that stays off would silently do nothing: refuse them, naming the switch."""
    for name in off:
        given = name in config.steps or any(name in s.steps for s in config.sources)
        if given and name not in config.disable:
            raise ConfigError(
                f"steps.{name} is set, but {name} is off by default: add `enable: [{name}]` to the config "
                f"(or --enable {name}), or remove its parameters"
            )


def check_embeddings_taken(
    names: Sequence[str],
    groups: dict[str, dict[str, Step]],
    config: CleanConfig,
    cli_disable: Collection[str] = (),
) -> None:
    """Group steps reading image embeddings (semantic_dedup, decontaminate.cosine) and output.embeddings
    use the ones the CLIP step computes: refuse them when it does not run, since every pair would pass
    unembedded and the store would be empty. `groups`: the active group steps."""
    if EMBEDDING_STEP in names:
        return
    readers = [n for n, g in groups.items() if any(step.reads_embeddings() for step in g.values())]
    if not readers and not config.output.embeddings:
        return
    if EMBEDDING_STEP in config.disable:
        where = "--disable" if EMBEDDING_STEP in cli_disable else "disable"
        why, fix = f"{EMBEDDING_STEP} is disabled", f"remove {EMBEDDING_STEP} from {where}, or "
    else:
        why, fix = f"this run has no {EMBEDDING_STEP} (caption-only sources)", ""
    if readers:
        undo = [
            f"take {n} out of enable"
            if next(iter(groups[n].values())).compares_embeddings
            else f"set {n}.cosine: null"
            for n in readers
        ]
        raise ConfigError(
            f"{', '.join(readers)} compares the image embeddings {EMBEDDING_STEP} computes, but {why}: "
            f"{fix}{' and '.join(undo)}"
        )
    raise ConfigError(
        f"output.embeddings stores the image embeddings {EMBEDDING_STEP} computes, but {why}: {fix}set "
        "output.embeddings: false"
    )


def check_shared_params(groups: dict[str, dict[str, Step]]) -> None:
    """A group step that compares pairs across sources (`same_params_everywhere`) has one set of
    parameters: a source that sets its own would make the answer depend on which pair is asked."""
    for name, by_source in groups.items():
        if not getattr(step_class(name), "same_params_everywhere", False):
            continue
        distinct = {repr(sorted(step.params().items())): src for src, step in by_source.items()}
        if len(distinct) > 1:
            raise ConfigError(
                f"{name} compares pairs across sources, so its parameters are set once under steps.{name}; "
                f"sources {', '.join(sorted(distinct.values()))} set their own: move them to steps.{name}"
            )


def check_hashes_taken(by_source: dict[str, list[Step]], groups: dict[str, dict[str, Step]]) -> None:
    """A step comparing perceptual hashes reads the one decode_check takes: refuse image_hash: false then,
    since every pair would pass unhashed."""
    hashing = [
        n
        for n, g in groups.items()
        if getattr(next(iter(g.values())), "compares_hashes", False) and any(st.active() for st in g.values())
    ]
    if not hashing:
        return
    for source, steps in by_source.items():
        if any(s.name == "decode_check" and not getattr(s, "image_hash", True) for s in steps):
            raise ConfigError(
                f"{', '.join(hashing)} compare{'s' if len(hashing) == 1 else ''} the perceptual hash decode_check "
                f"takes, but source {source!r} "
                f"sets decode_check.image_hash: false: remove it, or add {', '.join(hashing)} to disable"
            )


def merged_params(name: str, global_params: dict[str, Any], source_params: dict[str, Any]) -> dict[str, Any]:
    """A source's parameters for step `name` over the global ones; a source that sets one parameter of an
    exclusive group (Step.exclusive_params: clip_filter's threshold or keep_fraction) drops the global
    value of the others."""
    merged = dict(global_params)
    for group in step_class(name).exclusive_params:
        if any(key in source_params for key in group):
            for key in group:
                merged.pop(key, None)
    return {**merged, **source_params}


def check_needs(
    names: list[str],
    config: CleanConfig,
    carried: Callable[[SourceConfig], Collection[str]] | None = None,
    cli_disable: Collection[str] = (),
) -> None:
    """Refuses a disabled step whose output a step still on filters on (`Step.needs`): clip_filter without
    clip_score would reject every pair as clip_no_score. Inputs that carry the scores the disabled step
    writes stand in for it (re-tuning a threshold on vlcurate's own shards without the GPU step)."""
    for needed in dict.fromkeys(config.disable):
        readers = [n for n in names if needed in step_class(n).needs]
        if not readers:
            continue
        writes = set(step_class(needed).score_names)
        if writes and carried is not None and all(writes <= set(carried(s)) for s in config.sources):
            continue
        what = step_class(readers[0]).needs[needed]
        why = f"{'it filters' if len(readers) == 1 else 'they filter'} on {what}"
        steps = [needed, *readers]
        if needed in cli_disable:  # the fix in the form the user wrote
            given, fix = f"--disable {needed}", f"--disable {','.join(steps)}"
        else:
            given, fix = f"disable: [{needed}]", f"disable: [{', '.join(steps)}]"
        raise ConfigError(f"{given} also needs {', '.join(readers)} disabled ({why}): use {fix}")
