"""The ordered table of steps: config names -> step classes, in the order the steps run.

A new step is one module plus one line in BUILTIN_STEPS (CONTRIBUTING.md). The table names each class as
"module:Class" and imports it only when asked (`step_class`), so the step modules never import this one:
no import circle, and a run imports only the steps it builds. The order is the default chain
(filters/chain.py): cheap text steps first, then header-only image checks, the full decode, the model step
and its filter, and the steps that compare pairs with each other. Unknown names and parameters fail at
start-up.
"""

from __future__ import annotations

import importlib
import inspect
import typing
from typing import Any

from vlcurate.filters.base import Step
from vlcurate.schemas.errors import ConfigError, unknown_name_error
from vlcurate.schemas.typecheck import check_value

BUILTIN_STEPS: dict[str, str] = {
    # text: a size guard, clean, then filter; a caption emptied by cleaning is caught by `length` as too_short
    "max_caption_bytes": "vlcurate.filters.caption_size:MaxCaptionBytes",
    "normalize_caption": "vlcurate.filters.unicode_text:NormalizeCaption",
    "clean_html": "vlcurate.filters.html_text:CleanHtml",
    "clean_patterns": "vlcurate.filters.patterns:CleanPatterns",
    "strip_tags": "vlcurate.filters.academic:StripTags",
    "script": "vlcurate.filters.script:ScriptFilter",
    "emoji": "vlcurate.filters.emoji_text:EmojiFilter",
    "length": "vlcurate.filters.length:LengthFilter",
    "language": "vlcurate.filters.language:LanguageTag",  # after the text filters: the model sees survivors
    # image: header-only checks first, the full decode last
    "probe_image": "vlcurate.filters.image_probe:ProbeImage",
    "max_pixels": "vlcurate.filters.image_size:MaxPixels",
    "min_side": "vlcurate.filters.image_size:MinSide",
    "aspect_ratio": "vlcurate.filters.image_size:AspectRatio",
    "decode_check": "vlcurate.filters.image_probe:DecodeCheck",
    # model: CLIP scores the survivors of the steps above (RunInference), then its threshold filter
    "clip_score": "vlcurate.filters.clip_filter:ClipScore",
    "clip_filter": "vlcurate.filters.clip_filter:ClipFilter",
    # groups: compare the pairs that survived every step above with each other
    "keep_longest": "vlcurate.filters.academic:KeepLongest",  # off unless a source turns it on
    # first of the image comparisons, so a copy of a test image is named as such, not as a near duplicate
    "decontaminate": "vlcurate.filters.decontaminate:Decontaminate",  # off unless evaluation sets are named
    "dedup": "vlcurate.filters.dedup:Dedup",
    "near_dedup": "vlcurate.filters.near_dedup:NearDedup",  # perceptual-hash neighbours (decode_check's hash)
    "semantic_dedup": "vlcurate.filters.semantic_dedup:SemanticDedup",  # CLIP embedding neighbours; off
}

# Steps that run only where a config turns them on (`enable: [name]`, or `--enable name`): semantic_dedup
# needs CLIP's image embeddings carried through the group steps and a clustering pass of its own, which a
# run should pay for only when asked (docs/dedup.md).
OFF_BY_DEFAULT: frozenset[str] = frozenset({"semantic_dedup"})

# The table in use: the built-in steps plus those added by register_step (plugins, tests).
_table: dict[str, str | type[Step]] = dict(BUILTIN_STEPS)
_classes: dict[str, type[Step]] = {}


def register_step(name: str, target: str | type[Step], *, after: str | None = None) -> None:
    """Adds a step to the table, for plugins and tests: `target` is its class or "module:Class", placed
    after step `after` (default: at the end). Built-in steps are lines of BUILTIN_STEPS instead."""
    if name in _table:
        raise ValueError(f"step name {name!r} registered twice")
    if after is not None and after not in _table:
        raise unknown_name_error("step", after, _table, "register_step(after=...)")
    names = list(_table)
    at = len(names) if after is None else names.index(after) + 1
    items = list(_table.items())
    items.insert(at, (name, target))
    _table.clear()
    _table.update(items)


def unregister_step(name: str) -> None:
    """Removes a step that register_step added (tests clean up with it)."""
    if name in BUILTIN_STEPS:
        raise ValueError(f"{name!r} is a built-in step")
    del _table[name]
    _classes.pop(name, None)


def off_by_default(name: str) -> bool:
    """Whether step `name` runs only where a config's `enable:` names it."""
    return name in OFF_BY_DEFAULT


def step_names() -> tuple[str, ...]:
    """Every step in the table, in the order the steps run."""
    return tuple(_table)


def step_class(name: str) -> type[Step]:
    """The class of step `name`, imported on first use; an unknown name is a ConfigError."""
    cls = _classes.get(name)
    if cls is not None:
        return cls
    if name not in _table:
        raise unknown_name_error("step", name, _table)
    target = _table[name]
    cls = _import_class(target) if isinstance(target, str) else target
    if not (isinstance(cls, type) and issubclass(cls, Step)) or getattr(cls, "name", None) != name:
        # A wrong line in the table is a bug, not a config mistake.
        raise TypeError(f"step table: {name!r} -> {target!r} is not a Step subclass whose name is {name!r}")
    _classes[name] = cls
    return cls


def _import_class(target: str) -> type:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def parameters(name: str) -> dict[str, inspect.Parameter]:
    init = step_class(name).__init__
    if init is object.__init__:  # no constructor of its own: the step takes no parameters
        return {}
    return {n: p for n, p in inspect.signature(init).parameters.items() if n != "self"}


def parameter_names(name: str) -> list[str]:
    return list(parameters(name))


def parameter_types(name: str) -> dict[str, Any]:
    """{parameter: its constructor annotation}; an unannotated parameter takes anything."""
    init = step_class(name).__init__
    hints = typing.get_type_hints(init) if init is not object.__init__ else {}
    return {n: hints.get(n, Any) for n in parameters(name)}


def check_params(name: str, params: Any, where: str = "") -> None:
    """Refuses, before any data is read, parameters that are not a mapping, unknown ones, and values that
    do not fit the constructor's annotations: a step given a wrong type would reject every pair."""
    place = where or f"steps.{name}"
    if not isinstance(params, dict):
        raise ConfigError(
            f"config: {place} must be a mapping of parameters, {_mapping_example(name, params)}"
        )
    types = parameter_types(name)
    for key in params:
        if key not in types:
            raise unknown_name_error(f"parameter of step {name!r}", key, types, where)
    for key, value in params.items():
        check_value(types[key], value, f"config: {place}.{key}")


def _mapping_example(name: str, given: Any) -> str:
    """'e.g. min_side: {min_side: 256}': the given scalar as the value when the step takes just one
    parameter (what the user meant), else the first parameter's default."""
    params = parameters(name)
    if not params:
        return f"but {name} takes none: leave it out"
    first, param = next(iter(params.items()))
    plain = (str, int, float, bool)
    value = given if len(params) == 1 and isinstance(given, plain) else param.default
    shown = str(value).lower() if isinstance(value, bool) else value if isinstance(value, plain) else "..."
    return f"e.g. {name}: {{{first}: {shown}}}"


def build_step(name: str, params: dict[str, Any] | None = None, where: str = "") -> Step:
    params = dict(params or {})
    check_params(name, params, where)
    try:
        return step_class(name)(**params)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"step {name!r}{' in ' + where if where else ''}: {exc}") from exc
