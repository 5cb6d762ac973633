"""Maps config step names to step classes. Unknown names and parameters fail at start-up."""

from __future__ import annotations

import inspect
import typing
from typing import Any

from vlcurate.filters.base import Step
from vlcurate.schemas.errors import ConfigError, unknown_name_error
from vlcurate.schemas.typecheck import check_value

STEPS: dict[str, type[Step]] = {}


def register(cls: type[Step]) -> type[Step]:
    if cls.name in STEPS:
        raise ValueError(f"step name {cls.name!r} registered twice")
    STEPS[cls.name] = cls
    return cls


def step_class(name: str) -> type[Step]:
    _load_builtin_steps()
    if name not in STEPS:
        raise unknown_name_error("step", name, STEPS)
    return STEPS[name]


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


def _load_builtin_steps() -> None:
    # Importing the step modules registers them; done lazily so the registry has no import cycle.
    from vlcurate.filters import builtin  # noqa: F401
