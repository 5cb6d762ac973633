"""Output directories: atomic, self-describing, refuse to clobber a finished run.

A directory is finished when COMPLETED exists; it is written last, after info.json and stats.json.
Paths go through Beam's FileSystems, so local folders and gs:// buckets behave the same.

A run writes into a staging directory beside its output (`<parent>/.<name>.partial-<id>`, made by
prepare_output_dir) and moves what it wrote into the output only once it is complete (publish), so a
killed or failed run never touches the output, and an `--overwrite` run replaces a completed output
only with a completed one. Locally the move is a few renames: a fresh output is the staging directory
renamed; into an existing one, its entries go aside (COMPLETED first, into `.<name>.old-<id>`, where it
is put back last so that the aside copy is whole again) and the new entries come in, COMPLETED last: at
every instant one complete copy, staging, aside or the output, has its COMPLETED. On object stores
(gs://), where a rename is a copy and a delete per object, the output's COMPLETED and then its old
entries are deleted, the new files are copied in (COMPLETED last) and only then is staging deleted: the
staging copy stays complete until the output is. Files of the output directory that a run does not own
are never moved or deleted. Staging and aside directories of killed runs are removed by the next run
into the same output that publishes.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from typing import Any, BinaryIO

from apache_beam.io.filesystems import FileSystems

from vlcurate.schemas.encoding import utf8
from vlcurate.schemas.errors import ConfigError

COMPLETED = "COMPLETED"
# Everything a run writes at the top of its output directory (clean, format, sft); publish replaces these
# and whatever else the new run wrote, and nothing else.
OWNED = (
    "shards",
    "embeddings",  # clean's output.embeddings
    "semantic-dedup",  # `vlcurate dedup --semantic`'s list of this run: stale once the run is replaced
    "eval-embeddings.npz",  # the evaluation embeddings decontaminate.cosine compared with (eval_sets.py)
    "rejects",
    "images",
    "samples",
    "packed",
    "info.json",
    "stats.json",
    "report.html",
    COMPLETED,
)
STAGING, ASIDE = "partial", "old"  # sibling directories: `.<name>.partial-<id>`, `.<name>.old-<id>`


def join(*parts: str) -> str:
    return FileSystems.join(*parts)


def is_completed(directory: str) -> bool:
    return FileSystems.exists(join(directory, COMPLETED))


def prepare_output_dir(directory: str, overwrite: bool) -> str:
    """Refuses a finished directory unless `overwrite`; returns a new, empty staging directory beside
    it, which the run writes into and `publish` moves into `directory` (see the module docstring)."""
    if os.path.isfile(directory):  # local: a remote store has no folders to tell a file from
        raise ConfigError(f"--output {directory} is a file; give a directory")
    if is_completed(directory) and not overwrite:
        raise ConfigError(
            f"{directory} already holds a completed run (it has {COMPLETED}). "
            "Pass --overwrite to replace it, or choose another --output."
        )
    staging = _sibling(directory, STAGING)
    FileSystems.mkdirs(staging)
    return staging


def _is_local(path: str) -> bool:
    return FileSystems.get_scheme(path) in (None, "file")


def _parent_and_name(directory: str) -> tuple[str, str]:
    if _is_local(directory):
        return os.path.split(os.path.abspath(directory))
    parent, _, name = directory.rstrip("/").rpartition("/")
    return parent, name


def beside(directory: str, suffix: str) -> str:
    """`<parent>/.<name>.<suffix>`: a hidden folder beside the output (publish never touches it)."""
    parent, name = _parent_and_name(directory)
    return join(parent, f".{name}.{suffix}")


def remove_tree(path: str) -> None:
    """Deletes a folder (or object prefix) and everything below it; nothing when it is not there."""
    if _is_local(path):
        shutil.rmtree(path, ignore_errors=True)
        return
    found = _files_under(path)
    if found:
        FileSystems.delete(found)


def _sibling(directory: str, kind: str) -> str:
    parent, name = _parent_and_name(directory)
    return join(parent, f".{name}.{kind}-{uuid.uuid4().hex[:12]}")


def publish(staging: str, directory: str) -> str:
    """Moves a finished run from `staging` into `directory` and returns where the run's files are now:
    `directory`, or `staging` for a run without COMPLETED (it failed) when `directory` holds a completed
    run, which is never replaced by one that is not. Other files of `directory` stay."""
    if not is_completed(staging) and is_completed(directory):
        return staging
    if _is_local(directory):
        _publish_local(staging, directory)
    else:
        _publish_remote(staging, directory)
    _remove_stale_siblings(directory)
    return directory


def _publish_local(staging: str, directory: str) -> None:
    if not os.path.lexists(directory):
        os.makedirs(os.path.dirname(os.path.abspath(directory)), exist_ok=True)
        os.rename(staging, directory)  # atomic
        return
    new = sorted(os.listdir(staging), key=lambda name: name == COMPLETED)  # COMPLETED last
    old = sorted({*OWNED, *new} & set(os.listdir(directory)), key=lambda name: name != COMPLETED)
    aside = _sibling(directory, ASIDE) if old else None
    if aside is not None:
        os.mkdir(aside)
        hidden = os.path.join(aside, f".{COMPLETED}")  # no reader trusts the aside copy while it is moved
        for name in old:  # COMPLETED first
            _move(os.path.join(directory, name), hidden if name == COMPLETED else os.path.join(aside, name))
        if COMPLETED in old:
            os.rename(hidden, os.path.join(aside, COMPLETED))
    for name in new:
        _move(os.path.join(staging, name), os.path.join(directory, name))
    shutil.rmtree(staging, ignore_errors=True)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def _move(source: str, destination: str) -> None:
    """A rename; a copy and a delete where `destination` is on another filesystem (a mount point)."""
    try:
        os.rename(source, destination)
    except OSError:
        shutil.move(source, destination)


def _files_under(path: str) -> list[str]:
    """Every file below `path` (a folder or an object prefix), and `path` itself where it is a file."""
    found = [m.path for r in FileSystems.match([join(path, "**")]) for m in r.metadata_list]
    if not found and FileSystems.exists(path):
        found = [path]
    return found


def _publish_remote(staging: str, directory: str) -> None:
    marker = join(directory, COMPLETED)
    if FileSystems.exists(marker):
        FileSystems.delete([marker])
    files = sorted(_files_under(staging), key=lambda path: path == join(staging, COMPLETED))
    relative = [path[len(staging) :].lstrip("/") for path in files]
    names = {*OWNED, *(r.split("/", 1)[0] for r in relative)} - {COMPLETED}
    old = [path for name in sorted(names) for path in _files_under(join(directory, name))]
    if old:
        FileSystems.delete(old)
    targets = [join(directory, *r.split("/")) for r in relative]
    for folder in sorted({_dirname(t) for t in targets}):
        ensure_dir(folder)  # a no-op on object stores
    if files and relative[-1] == COMPLETED:
        FileSystems.copy(files[:-1], targets[:-1])
        FileSystems.copy(files[-1:], targets[-1:])
    elif files:
        FileSystems.copy(files, targets)
    FileSystems.delete(files)


def _dirname(path: str) -> str:
    return path.rsplit("/", 1)[0]


def _remove_stale_siblings(directory: str) -> None:
    """Staging and aside directories that killed runs into `directory` left behind."""
    parent, name = _parent_and_name(directory)
    patterns = [f".{name}.{kind}-*" for kind in (STAGING, ASIDE)]
    if _is_local(directory):
        for entry in os.listdir(parent):
            if any(fnmatch.fnmatchcase(entry, p) for p in patterns):
                shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)
        return
    stale = [path for p in patterns for path in _files_under(join(parent, p))]
    if stale:
        FileSystems.delete(stale)


@contextlib.contextmanager
def atomic_writer(path: str) -> Iterator[BinaryIO]:
    """A file to write `path` through: it is written under a temporary name and renamed once whole, so a
    reader never sees half a file. On an error the temporary file is removed. Object stores (gs://) show
    an object only once its upload is whole, and a rename there is a copy and a delete (10 requests an
    image against 2-3): there `path` is written directly."""
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}" if _is_local(path) else path
    fh = FileSystems.create(tmp)
    try:
        yield fh
    except BaseException:
        fh.close()
        with contextlib.suppress(Exception):
            FileSystems.delete([tmp])
        raise
    fh.close()
    if tmp == path:
        return
    if FileSystems.exists(path):
        FileSystems.delete([path])
    FileSystems.rename([tmp], [path])


def write_bytes_atomic(path: str, data: bytes) -> None:
    """Writes to a temporary name and renames, so a reader never sees half a file."""
    with atomic_writer(path) as fh:
        fh.write(data)


def write_json(path: str, value: Any) -> None:
    text = json.dumps(value, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    write_bytes_atomic(path, utf8(text))


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
