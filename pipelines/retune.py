"""`vlcurate retune`: a completed clean output again, with new thresholds, without the GPU.

The run is the clean job itself on the same inputs and config, with `--set` changes to thresholds, and the
model step replaced by the scores the first run stored (pipelines/stored_scores.py). So every output file
is what a fresh `clean` with those thresholds writes (tests/pipelines/test_retune.py checks the shards
and rejects byte for byte), the CPU steps run again, and images are read again from the inputs (a pair
that now stays needs its image in the shards).

Only thresholds can change (Step.what_if parameters, and clip_filter's keep_fraction): other settings
would change what the stored scores mean. A threshold of a step before the model step that would let
pairs through that the first run rejected before scoring them is refused before any input is read,
naming how many and one of them: their scores were never computed.
"""

from __future__ import annotations

import math
from typing import Any

import yaml

from vlcurate.filters.registry import step_class
from vlcurate.pipelines.output import join, read_json, require_completed
from vlcurate.schemas.config import CleanConfig, from_dict
from vlcurate.schemas.errors import ConfigError
from vlcurate.schemas.record import Pair

RETUNABLE = (
    "thresholds (min_side, aspect_ratio, length, language.min_prob, clip_filter threshold and keep_fraction)"
)


def parse_setting(text: str) -> tuple[str | None, str, str, str | None, Any]:
    """`[SOURCE:]STEP.PARAM[.LANGUAGE]=VALUE` -> (source, step, param, language, value); VALUE is YAML."""
    key, sep, raw = text.partition("=")
    source, _, path = key.rpartition(":") if ":" in key else (None, "", key)
    parts = path.split(".")
    if not sep or len(parts) not in (2, 3) or not all(parts):
        raise ConfigError(
            f"--set {text!r}: write [SOURCE:]STEP.PARAM[.LANGUAGE]=VALUE, e.g. clip_filter.threshold.en=0.31"
        )
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    return source or None, parts[0], parts[1], parts[2] if len(parts) == 3 else None, value


def _retunable(step: str, param: str) -> bool:
    """A threshold (a what-if parameter), or a parameter that sets one in its place (the other member of
    an `exclusive_params` group holding a threshold: clip_filter's keep_fraction)."""
    try:
        cls = step_class(step)
    except ConfigError:
        return False
    if param in cls.what_if:
        return True
    return any(param in group and any(p in cls.what_if for p in group) for group in cls.exclusive_params)


def apply_settings(config: CleanConfig, step_params: dict[str, dict[str, Any]], settings: list[str]) -> None:
    """Writes each `--set` into the config: into `steps` (every source) or one source's `steps`. A
    per-language value joins the threshold in effect (`step_params`: info.json's) as a table."""
    names = {s.name: s for s in config.sources}
    for text in settings:
        source, step, param, lang, value = parse_setting(text)
        if not _retunable(step, param):
            raise ConfigError(
                f"--set {text!r}: retune changes only {RETUNABLE}; for anything else run clean."
            )
        if source is not None and source not in names:
            raise ConfigError(f"--set {text!r}: no source {source!r} in this output ({', '.join(names)}).")
        target = (names[source].steps if source else config.steps).setdefault(step, {})
        if lang is not None:
            current = target.get(param)
            if not isinstance(current, dict):
                effective = [p.get(step, {}).get(param) for p in step_params.values()]
                current = (
                    current if current is not None else next((e for e in effective if e is not None), None)
                )
                current = dict(current) if isinstance(current, dict) else {"default": current}
            value = {**current, lang: value}
        target[param] = value
        for other in step_class(step).exclusive_params:  # threshold replaces keep_fraction and back
            if param in other:
                for key in other:
                    if key != param:
                        target.pop(key, None)


def load_for_retune(directory: str, settings: list[str], output: str) -> CleanConfig:
    """The config of the completed clean output `directory`, with `settings` applied and `output` as its
    output directory; refuses what retune cannot do (ConfigError, before any input is read)."""
    require_completed(directory)
    info = read_json(join(directory, "info.json"))
    if info.get("kind") != "vlcurate.clean":
        raise ConfigError(
            f"{directory} is a {info.get('kind')} output; retune takes a `vlcurate clean` output."
        )
    if not settings:
        raise ConfigError("give at least one --set STEP.PARAM=VALUE (e.g. --set clip_filter.threshold=0.3).")
    config = from_dict(CleanConfig, info["config"], where=f"{directory}/info.json")
    apply_settings(config, info.get("step_params", {}), settings)
    config.output.dir = output
    config.__post_init__()
    return config


def refuse_unscored(config: CleanConfig, directory: str) -> None:
    """Refuses thresholds that would send pairs the first run rejected before its model step on to it:
    their model scores do not exist. Decided on the stored scores of the first run's rejects."""
    import pyarrow.parquet as pq
    from apache_beam.io.filesystems import FileSystems

    from vlcurate.filters.chain import build_chain

    chain = build_chain(config)
    before, model, _ = chain.split()
    if not model:
        return
    reasons = {reason: step for steps in before.values() for step in steps for reason in step.reasons}
    steps = {src: {s.name: s for s in steps} for src, steps in before.items()}
    waiting, example = 0, None
    for entry in read_json(join(directory, "info.json"))["rejects"]:
        with FileSystems.open(join(directory, entry["file"])) as fh:
            columns = ["uid", "source", "reason", "caption", "width", "height", "scores"]
            rows = pq.read_table(fh, columns=columns).to_pylist()
        for row in rows:
            owner = reasons.get(row["reason"])
            if owner is None or not owner.what_if or row["source"] not in steps:
                continue
            scores = {k: v for k, v in (row["scores"] or {}).items() if v is not None and math.isfinite(v)}
            pair = Pair(
                uid=row["uid"],
                source=row["source"],
                caption=row["caption"] or "",
                width=row["width"],
                height=row["height"],
                scores=scores,
            )
            steps[row["source"]][owner.name].apply(pair)  # the step with the new thresholds
            if pair.reject is None:  # now through to the model step
                waiting += 1
                example = example or row["uid"]
    if waiting:
        raise ConfigError(
            f"these thresholds would send {waiting:,} pairs that {directory} rejected before CLIP on to CLIP "
            f"(e.g. {example}); their scores were never computed. Run clean with these thresholds instead."
        )
