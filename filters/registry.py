"""Maps config step names to step classes. Unknown names and parameters fail at start-up."""

from __future__ import annotations

import inspect
from typing import Any

from vlcurate.filters.base import Step
from vlcurate.schemas.errors import ConfigError, unknown_name_error

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


def parameter_names(name: str) -> list[str]:
    init = step_class(name).__init__
    if init is object.__init__:  # no constructor of its own: the step takes no parameters
        return []
    return [p for p in inspect.signature(init).parameters if p != "self"]


def check_params(name: str, params: dict[str, Any], where: str = "") -> None:
    valid = parameter_names(name)
    for key in params:
        if key not in valid:
            raise unknown_name_error(f"parameter of step {name!r}", key, valid, where)


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
