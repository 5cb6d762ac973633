"""Config values checked against type annotations, with messages that name the fix.

One checker for everything a config sets: dataclass fields (schemas/config.py) and step parameters, whose
types are the annotations of the step constructors (filters/registry.py). YAML gives plain values, so a
value either fits an annotation or the run stops at start-up: a quoted number ("256") would otherwise
reach a step as a string and make it reject every pair.
"""

from __future__ import annotations

import types
import typing
from typing import Any

import yaml

from vlcurate.schemas.errors import ConfigError

# Plain types: what a value must be to fit, and how the message names it (singular, plural).
_PLAIN: dict[type, tuple[str, str]] = {
    bool: ("true or false", "true/false values"),
    int: ("an integer", "integers"),
    float: ("a number", "numbers"),
    str: ("a string", "strings"),
    type(None): ("null", "nulls"),
}


def _fits_plain(hint: type, value: Any) -> bool:
    if hint is float:  # an integer is a fine number; true/false is not (bool subclasses int)
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def fits(hint: Any, value: Any) -> bool:
    """Whether `value` fits annotation `hint`. Annotations this does not know accept anything."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint in _PLAIN or hint is None:
        return _fits_plain(type(None) if hint is None else hint, value)
    if origin in (typing.Union, types.UnionType):
        return any(fits(arm, value) for arm in args)
    if origin is typing.Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if hint is list or origin is list or (origin is tuple and args[1:] == (Ellipsis,)):
        # A bare string is refused: a step would iterate its characters.
        item = args[0] if args else Any
        return isinstance(value, (list, tuple)) and all(fits(item, v) for v in value)
    if hint is dict or origin is dict:
        key, item = args or (Any, Any)
        return isinstance(value, dict) and all(fits(key, k) and fits(item, v) for k, v in value.items())
    return True


def expected(hint: Any, plural: bool = False) -> str:
    """How a message names what fits `hint`: 'an integer', 'a number or null', 'a list of strings'."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint in _PLAIN or hint is None:
        return _PLAIN[type(None) if hint is None else hint][plural]
    if origin in (typing.Union, types.UnionType):
        # Null last: "a number, a mapping of strings to numbers, or null".
        arms = sorted(args, key=lambda a: a is type(None))
        names = [expected(a, plural) for a in arms]
        if len(names) < 3:
            return " or ".join(names)
        return f"{', '.join(names[:-1])}, or {names[-1]}"
    if origin is typing.Literal:
        return f"one of {', '.join(repr(a) for a in args)}"
    if origin in (list, tuple) and args:
        return f"{'lists' if plural else 'a list'} of {expected(args[0], plural=True)}"
    if hint is list:
        return "lists" if plural else "a list"
    if hint is dict:
        return "mappings" if plural else "a mapping"
    if origin is dict and args:
        mapping = "mappings" if plural else "a mapping"
        return f"{mapping} of {expected(args[0], plural=True)} to {expected(args[1], plural=True)}"
    return getattr(hint, "__name__", str(hint))


def describe(value: Any) -> str:
    """A given value as a message quotes it: "the string '256'", 'the number 3', 'true', 'null'."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"the string {_short(value)}"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, dict):
        return f"the mapping {_short(value)}"
    if isinstance(value, (list, tuple)):
        return f"the list {_short(list(value))}"
    return f"{type(value).__name__} {_short(value)}"


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _fix(hint: Any, value: Any) -> str:
    """The likely fix, when there is an obvious one: a quoted YAML scalar that would fit unquoted, or one
    value where a list is wanted."""
    if isinstance(value, str) and "\n" not in value:
        try:
            unquoted = yaml.safe_load(value)
        except yaml.YAMLError:
            unquoted = value
        if isinstance(unquoted, bool) and fits(hint, unquoted):  # YAML reads yes/no/on/off as true/false
            return f" (write {str(unquoted).lower()} without quotes)"
        if not isinstance(unquoted, str) and fits(hint, unquoted):
            return f" (write {value} without quotes)"
    if not isinstance(value, (list, tuple, dict)) and fits(hint, [value]):
        return f" (a list: write [{value}])"
    return ""


def check_value(hint: Any, value: Any, where: str) -> None:
    """Raises a ConfigError naming `where`, what fits and what was given, when `value` does not fit."""
    if not fits(hint, value):
        raise ConfigError(f"{where} must be {expected(hint)}, got {describe(value)}{_fix(hint, value)}")
