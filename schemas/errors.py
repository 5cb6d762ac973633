"""Configuration errors (raised before any data is read, always naming the fix) and run failures."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ConfigError(ValueError):
    """Bad configuration. The message says what is wrong and what would be valid."""


class RunFailedError(RuntimeError):
    """A run went to the end but broke a limit the user set (e.g. --max-reject-share): its output has no
    COMPLETED marker. The message is one line naming the limit; the command exits with code 1."""


def unknown_name_error(kind: str, name: str, valid: Iterable[str], where: str = "") -> ConfigError:
    valid = sorted(valid)
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    place = f" in {where}" if where else ""
    return ConfigError(f"unknown {kind} {name!r}{place}.{hint} Valid: {', '.join(valid)}.")
