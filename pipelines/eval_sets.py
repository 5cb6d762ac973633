"""Evaluation sets for the decontaminate step (filters/decontaminate.py): their images' perceptual hashes,
read and hashed on the launcher before any input is read, so a wrong path fails the run at once.

A set is a folder of images (every file with an image extension, at any depth; its id is
`<folder name>/<path inside it>`) hashed as decode_check hashes a pair's image (image_probe.decode_draft),
or a text file (.tsv or .txt) of `id<TAB>hash` lines (blank lines and lines starting with # are skipped), such as
`vlcurate hashes DIR` writes. Local paths and object stores (gs://) alike.
"""

from __future__ import annotations

import posixpath

from apache_beam.io.filesystems import FileSystems

from vlcurate.filters.base import GroupStep
from vlcurate.filters.image_hash import NEAR_DUP_HASH_BITS
from vlcurate.filters.image_probe import decode_draft
from vlcurate.filters.near_dedup import Entry
from vlcurate.schemas.errors import ConfigError
from vlcurate.schemas.record import IMAGE_EXTENSIONS

_HEX_DIGITS = NEAR_DUP_HASH_BITS // 4
HASH_FILE_SUFFIXES = (".tsv", ".txt")


def load_eval_entries(step: GroupStep) -> list[tuple[list[str], Entry]]:
    """Every evaluation image of `step.sets` as (bucket keys, entry); raises ConfigError naming the fix."""
    entries = []
    for path in getattr(step, "sets", []):
        for eval_id, hash_hex in eval_hashes(path):
            entries.append(step.eval_entry(eval_id, hash_hex))
    return entries


def eval_hashes(path: str) -> list[tuple[str, str]]:
    """(id, hash hex) of every image of one evaluation set (module docstring), sorted by id."""
    path = path.rstrip("/")
    is_hash_file = path.endswith(HASH_FILE_SUFFIXES)
    found = (
        [] if is_hash_file else [m.path for r in FileSystems.match([path + "/**"]) for m in r.metadata_list]
    )
    if not found and not FileSystems.exists(path):  # an object store has no folder objects: match first
        raise ConfigError(
            f"decontaminate.sets: {path} does not exist; name a folder of evaluation images or a file of "
            "id<TAB>hash lines (vlcurate hashes DIR writes one)"
        )
    if is_hash_file:
        return _read_hash_file(path)
    name = posixpath.basename(path)
    images = sorted(p for p in found if p.rsplit(".", 1)[-1].lower() in IMAGE_EXTENSIONS)
    if not images:
        raise ConfigError(f"decontaminate.sets: {path} holds no image ({', '.join(IMAGE_EXTENSIONS)})")
    out = []
    for image in images:
        with FileSystems.open(image) as fh:
            data = fh.read()
        try:
            hash_hex = decode_draft(data)
        except Exception as exc:
            raise ConfigError(
                f"decontaminate.sets: evaluation image {image} does not decode ({exc}); remove it from {path}"
            ) from None
        out.append((f"{name}/{image[len(path) + 1 :]}", hash_hex))
    return out


def _read_hash_file(path: str) -> list[tuple[str, str]]:
    with FileSystems.open(path) as fh:
        text = fh.read().decode("utf-8")
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 2 or len(parts[1]) != _HEX_DIGITS or not _is_hex(parts[1]):
            raise ConfigError(
                f"decontaminate.sets: {path} line {number} is not `id<TAB>hash` with a {_HEX_DIGITS}-digit hex "
                "hash; write the file with `vlcurate hashes DIR`"
            )
        out.append((parts[0], parts[1].lower()))
    return sorted(out)


def _is_hex(text: str) -> bool:
    try:
        int(text, 16)
    except ValueError:
        return False
    return True
