"""What reproduces a run, for every output's info.json: code (vlcurate version and git commit), library
versions, the CLIP weights' sha256, and when the run started and ended.

Nothing here may fail a run or print: what cannot be known is null.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import importlib.metadata
import os
import platform
import subprocess
import time
from collections.abc import Iterable
from typing import Any

import vlcurate

# info.json key -> the distribution whose version it records (read from metadata: nothing is imported).
DISTRIBUTIONS = {
    "torch": "torch",
    "open_clip": "open_clip_torch",
    "apache_beam": "apache-beam",
    "pyarrow": "pyarrow",
    "pillow": "pillow",
    "numpy": "numpy",
}


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"vlcurate": vlcurate.__version__, "python": platform.python_version()}
    for key, distribution in DISTRIBUTIONS.items():
        try:
            found[key] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            found[key] = None
    return found


def _git(root: str, *args: str) -> str | None:
    """Output of `git -C root args`, or None when git is missing or fails. GIT_OPTIONAL_LOCKS=0: `status`
    must not take the index lock that someone committing in the same tree may need."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    try:
        done = subprocess.run(
            ["git", "-C", root, *args], capture_output=True, text=True, timeout=20, check=False, env=env
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_commit(root: str | None = None) -> str | None:
    """HEAD of the checkout vlcurate runs from, with `-dirty` when tracked files have uncommitted changes;
    None when vlcurate is not run from a git checkout (an installed package inside some other repository
    is not its checkout) or git is missing."""
    root = root or os.path.dirname(os.path.dirname(os.path.abspath(vlcurate.__file__)))
    top = _git(root, "rev-parse", "--show-toplevel")
    if top is None or os.path.realpath(top) != os.path.realpath(root):
        return None
    commit = _git(root, "rev-parse", "HEAD")
    changes = _git(root, "status", "--porcelain", "--untracked-files=no")
    if not commit or changes is None:
        return None
    return f"{commit}-dirty" if changes else commit


def sha256_file(path: str) -> str:
    stat = os.stat(path)
    return _sha256(os.path.realpath(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    """Cached by size and modification time: a checkpoint of gigabytes is hashed once per process."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_weights(specs: Iterable[str]) -> dict[str, dict[str, str | None]]:
    """{spec: {"file", "sha256"}} for each CLIP model used: the local file its weights load from (bundled,
    local-dir, a checkpoint path, a hub model's cached file) and its hash; both null when not on this
    machine (a hub model not cached here, random weights)."""
    from vlcurate.model.clip_models import weights_file

    found: dict[str, dict[str, str | None]] = {}
    for spec in sorted(set(specs)):
        try:
            path = weights_file(spec)
            found[spec] = {"file": path, "sha256": sha256_file(path) if path else None}
        except Exception:  # provenance never fails a run
            found[spec] = {"file": None, "sha256": None}
    return found


def utc_iso(unix_time: float) -> str:
    """2026-12-07T10:11:12.345Z"""
    moment = datetime.datetime.fromtimestamp(unix_time, datetime.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def started(models: Iterable[str] = ()) -> dict[str, Any]:
    """info.json's reproduction fields at the start of a run; `finished` completes them at its end."""
    return {
        "versions": versions(),
        "git_commit": git_commit(),
        "models": model_weights(models),
        "run": {"started": utc_iso(time.time())},
    }


def finished(info: dict[str, Any]) -> dict[str, Any]:
    """`info` with the run's end time and wall seconds (since `run.started`) added."""
    now = time.time()
    run = dict(info.get("run") or {})
    begun = run.get("started")
    wall = None
    if begun:
        wall = round(now - datetime.datetime.fromisoformat(begun.replace("Z", "+00:00")).timestamp(), 3)
    return {**info, "run": {**run, "finished": utc_iso(now), "wall_seconds": wall}}
