"""Configuration errors: raised before any data is read, always naming the fix."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ConfigError(ValueError):
    """Bad configuration. The message says what is wrong and what would be valid."""


def unknown_name_error(kind: str, name: str, valid: Iterable[str], where: str = "") -> ConfigError:
    valid = sorted(valid)
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    place = f" in {where}" if where else ""
    return ConfigError(f"unknown {kind} {name!r}{place}.{hint} Valid: {', '.join(valid)}.")
