"""Output directories: atomic, self-describing, refuse to clobber a finished run.

A directory is finished when COMPLETED exists; it is written last, after info.json and stats.json.
Paths go through Beam's FileSystems, so local folders and gs:// buckets behave the same.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from typing import Any, BinaryIO

from apache_beam.io.filesystems import FileSystems

from vlcurate.schemas.errors import ConfigError

COMPLETED = "COMPLETED"
# Everything a run writes at the top of its output directory; nothing else is ever deleted.
OWNED = ("shards", "rejects", "images", "info.json", "stats.json", "report.html", COMPLETED)


def join(*parts: str) -> str:
    return FileSystems.join(*parts)


def is_completed(directory: str) -> bool:
    return FileSystems.exists(join(directory, COMPLETED))


def prepare_output_dir(directory: str, overwrite: bool) -> None:
    """Refuses a finished directory unless `overwrite`; clears what a run owns (leftovers of a failed
    run, or the finished run being overwritten). Other files in the directory are left alone."""
    if os.path.isfile(directory):  # local: a remote store has no folders to tell a file from
        raise ConfigError(f"--output {directory} is a file; give a directory")
    if is_completed(directory) and not overwrite:
        raise ConfigError(
            f"{directory} already holds a completed run (it has {COMPLETED}). "
            "Pass --overwrite to replace it, or choose another --output."
        )
    leftovers = [join(directory, name) for name in OWNED if FileSystems.exists(join(directory, name))]
    if leftovers:
        # The COMPLETED marker goes first, so an interrupted cleanup never looks finished.
        leftovers.sort(key=lambda p: not p.endswith(COMPLETED))
        for path in leftovers:
            FileSystems.delete([path])
    if not FileSystems.exists(directory):
        FileSystems.mkdirs(directory)


@contextlib.contextmanager
def atomic_writer(path: str) -> Iterator[BinaryIO]:
    """A file to write `path` through: it is written under a temporary name and renamed once whole, so a
    reader never sees half a file. On an error the temporary file is removed."""
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    fh = FileSystems.create(tmp)
    try:
        yield fh
    except BaseException:
        fh.close()
        with contextlib.suppress(Exception):
            FileSystems.delete([tmp])
        raise
    fh.close()
    if FileSystems.exists(path):
        FileSystems.delete([path])
    FileSystems.rename([tmp], [path])


def write_bytes_atomic(path: str, data: bytes) -> None:
    """Writes to a temporary name and renames, so a reader never sees half a file."""
    with atomic_writer(path) as fh:
        fh.write(data)


def write_json(path: str, value: Any) -> None:
    text = json.dumps(value, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    write_bytes_atomic(path, text.encode("utf-8"))


def read_json(path: str) -> Any:
    with FileSystems.open(path) as fh:
        return json.loads(fh.read().decode("utf-8"))


def ensure_dir(path: str) -> None:
    if not FileSystems.exists(path):
        try:
            FileSystems.mkdirs(path)
        except OSError:
            if not FileSystems.exists(path):  # another worker made it first
                raise


def require_completed(directory: str) -> None:
    """Readers of vlcurate output call this: only a directory with COMPLETED is trusted."""
    if not is_completed(directory):
        raise ConfigError(
            f"{directory} is not a completed vlcurate output (no {COMPLETED} marker); "
            "its run failed or is still going. Rerun the step that writes it."
        )


def run_last(p, fn, *side_inputs, **kwargs):
    """Runs `fn(None, *side_inputs, **kwargs)` once, after every side input is complete (a runner
    materializes side inputs first): how each job writes stats.json, info.json and COMPLETED last."""
    import apache_beam as beam

    return p | "Finalize" >> beam.Create([None]) | "FinalizeRun" >> beam.Map(fn, *side_inputs, **kwargs)
