"""Prints the installed packages whose version differs from a lock file: `name installed (locked X)`.

Used by scripts/smoke_newest.sh to name the packages a break on the newest releases can come from.
Usage: python scripts/newer_than_lock.py requirements/lock-py3.11.txt
"""

from __future__ import annotations

import re
import sys
from importlib import metadata


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions(lock_text: str) -> dict[str, set[str]]:
    """name -> the versions a lock pins (a universal lock may pin several, one per marker)."""
    pins: dict[str, set[str]] = {}
    for line in lock_text.splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        if match:
            pins.setdefault(normalize(match[1]), set()).add(match[2])
    return pins


def differences(pins: dict[str, set[str]]) -> list[str]:
    found = []
    for dist in metadata.distributions():
        name = normalize(dist.metadata["Name"])
        if name in pins and dist.version not in pins[name]:
            found.append(f"{name} {dist.version} (locked {', '.join(sorted(pins[name]))})")
    return sorted(found)


if __name__ == "__main__":
    with open(sys.argv[1]) as fh:
        print(", ".join(differences(locked_versions(fh.read()))))
