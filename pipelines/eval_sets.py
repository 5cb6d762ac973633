"""Evaluation sets for the decontaminate step (filters/decontaminate.py): their images' perceptual hashes
and, with decontaminate.cosine, their CLIP image embeddings, read on the launcher before any input is
read, so a wrong path or model fails the run at once.

A set is
- a folder of images (every file with an image extension, at any depth; its id is
  `<folder name>/<path inside it>`), hashed as decode_check hashes a pair's image (image_probe.decode_draft)
  and embedded with the run's CLIP model (clip_handler.embed_images);
- a text file (.tsv or .txt) of `id<TAB>hash` lines (blank lines and lines starting with # are skipped),
  such as `vlcurate hashes DIR` writes: matched by hash only;
- an .npz of embeddings (`ids`, float16 `vectors`, the `model` that made them), such as
  `vlcurate hashes DIR --embeddings FILE` writes: matched by embedding only, and only by a run of that
  model (two models' embeddings share no space).
Local paths and object stores (gs://) alike. The embeddings the run compares with are written to its
output (EVAL_EMBEDDINGS_FILE), where every worker reads them and a reader sees what was compared.
"""

from __future__ import annotations

import io
import posixpath
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np
from apache_beam.io.filesystems import FileSystems

from vlcurate.filters.base import GroupStep
from vlcurate.filters.image_hash import NEAR_DUP_HASH_BITS
from vlcurate.filters.image_probe import decode_draft
from vlcurate.filters.near_dedup import Entry
from vlcurate.pipelines.output import join, write_bytes_atomic
from vlcurate.schemas.embedding import EMBEDDING_DTYPE
from vlcurate.schemas.errors import ConfigError
from vlcurate.schemas.record import IMAGE_EXTENSIONS

_HEX_DIGITS = NEAR_DUP_HASH_BITS // 4
HASH_FILE_SUFFIXES = (".tsv", ".txt")
EMBEDDINGS_SUFFIX = ".npz"
EVAL_EMBEDDINGS_FILE = "eval-embeddings.npz"
_EMBED_CHUNK = 256  # images read and embedded at a time on the launcher
_PROGRESS_S = 10.0  # a progress line at most this often while a folder is embedded


def load_eval_entries(step: GroupStep) -> list[tuple[list[str], Entry]]:
    """Every evaluation image of `step.sets` as (bucket keys, entry); raises ConfigError naming the fix."""
    entries = []
    for path in getattr(step, "sets", []):
        for eval_id, hash_hex in eval_hashes(path):
            entries.append(step.eval_entry(eval_id, hash_hex))
    return entries


def eval_hashes(path: str) -> list[tuple[str, str]]:
    """(id, hash hex) of every image of one evaluation set (module docstring), sorted by id; none for an
    .npz of embeddings."""
    path = path.rstrip("/")
    if path.endswith(EMBEDDINGS_SUFFIX):
        _check_exists(path)
        return []
    if path.endswith(HASH_FILE_SUFFIXES):
        _check_exists(path)
        return _read_hash_file(path)
    out = []
    for eval_id, image in folder_images(path):
        data = _read(image)
        try:
            hash_hex = decode_draft(data)
        except Exception as exc:
            raise ConfigError(
                f"decontaminate.sets: evaluation image {image} does not decode ({exc}); remove it from {path}"
            ) from None
        out.append((eval_id, hash_hex))
    return out


def folder_images(path: str) -> list[tuple[str, str]]:
    """(id, path) of every image of a folder set, sorted by id; ConfigError when there is none."""
    path = path.rstrip("/")
    found = [m.path for r in FileSystems.match([path + "/**"]) for m in r.metadata_list]
    if not found:  # an object store has no folder objects: match first
        _check_exists(path)
    name = posixpath.basename(path)
    images = sorted(p for p in found if p.rsplit(".", 1)[-1].lower() in IMAGE_EXTENSIONS)
    if not images:
        raise ConfigError(f"decontaminate.sets: {path} holds no image ({', '.join(IMAGE_EXTENSIONS)})")
    return [(f"{name}/{image[len(path) + 1 :]}", image) for image in images]


def _read(path: str) -> bytes:
    with FileSystems.open(path) as fh:
        return fh.read()


def _check_exists(path: str) -> None:
    if not FileSystems.exists(path):
        raise ConfigError(
            f"decontaminate.sets: {path} does not exist; name a folder of evaluation images, a file of "
            f"id<TAB>hash lines or an {EMBEDDINGS_SUFFIX} of embeddings (vlcurate hashes DIR writes them)"
        )


def eval_embeddings(
    path: str, spec: str, embed: Callable[[Sequence[bytes]], np.ndarray]
) -> tuple[list[str], np.ndarray] | None:
    """(ids, [n, d] float16 vectors) of one evaluation set for a run of CLIP model `spec`: a folder's
    images through `embed`, an .npz's stored vectors; None for a hash file."""
    path = path.rstrip("/")
    if path.endswith(HASH_FILE_SUFFIXES):
        return None
    if path.endswith(EMBEDDINGS_SUFFIX):
        _check_exists(path)
        ids, vectors, model = read_embeddings_file(path)
        if model != spec:
            raise ConfigError(
                f"decontaminate.sets: {path} holds embeddings of {model}, but this run's CLIP model is {spec}: "
                f"write them again with `vlcurate hashes DIR --embeddings {posixpath.basename(path)} "
                f"--clip-model {spec}`"
            )
        return ids, vectors
    images = folder_images(path)
    print(
        f"[vlcurate] decontaminate: embedding {len(images):,} evaluation images of {path} with {spec}",
        file=sys.stderr,
    )
    parts, said = [], time.monotonic()
    for start in range(0, len(images), _EMBED_CHUNK):  # a chunk's bytes in memory at a time
        chunk = images[start : start + _EMBED_CHUNK]
        parts.append(_embed_chunk(chunk, embed, path))
        if time.monotonic() - said > _PROGRESS_S and start + len(chunk) < len(images):
            print(
                f"[vlcurate] decontaminate: {start + len(chunk):,} of {len(images):,} embedded",
                file=sys.stderr,
            )
            said = time.monotonic()
    return [eval_id for eval_id, _ in images], np.concatenate(parts)


def _embed_chunk(chunk: list[tuple[str, str]], embed: Callable, path: str) -> np.ndarray:
    datas = [_read(image) for _, image in chunk]
    try:
        return embed(datas)
    except Exception:  # looked for one by one only when the chunk fails: the message names the image
        for (_, image), data in zip(chunk, datas):
            try:
                embed([data])
            except Exception as exc:
                raise ConfigError(
                    f"decontaminate.sets: evaluation image {image} does not decode ({exc}); remove it from "
                    f"{path}"
                ) from None
        raise


def load_eval_embeddings(step: GroupStep, spec: str) -> tuple[list[str], np.ndarray]:
    """Every evaluation embedding of `step.sets` for a run of CLIP model `spec` (the model is loaded only
    when a folder needs it); ConfigError when no set gives one."""
    embed = make_embedder(spec)
    ids: list[str] = []
    parts = []
    for path in step.sets:
        found = eval_embeddings(path, spec, embed)
        if found is not None:
            ids += found[0]
            parts.append(found[1])
    if not ids:
        raise ConfigError(
            "decontaminate.cosine compares CLIP embeddings, but every set in decontaminate.sets is a hash file: "
            "name the folder of evaluation images, or an .npz that `vlcurate hashes DIR --embeddings FILE` "
            "writes, or set decontaminate.cosine: null"
        )
    widths = {part.shape[1] for part in parts}
    if len(widths) > 1:
        raise ConfigError(
            f"decontaminate.sets: embeddings of sizes {sorted(widths)}; make them with one model"
        )
    return ids, np.concatenate(parts)


def make_embedder(spec: str) -> Callable[[Sequence[bytes]], np.ndarray]:
    """Embeds encoded images with CLIP model `spec`, loaded on the first call (on the GPU where there is
    one): nothing is loaded for sets that need no embedding."""
    loaded = []

    def embed(images: Sequence[bytes]) -> np.ndarray:
        # torch: imported only when a folder needs it
        from vlcurate.model.clip_handler import embed_images, pick_device
        from vlcurate.model.clip_models import load_clip_cached

        if not loaded:
            loaded.append(load_clip_cached(spec, pick_device("auto")))
        return embed_images(loaded[0], images)

    return embed


def write_eval_embeddings(
    directory: str, instances: Sequence[GroupStep], ids: Sequence[str], vectors: np.ndarray, spec: str
) -> None:
    """Writes the evaluation embeddings into the run's output `directory` and points every instance of
    the step at them (the workers read them there)."""
    path = join(directory, EVAL_EMBEDDINGS_FILE)
    write_embeddings_file(path, ids, vectors, spec)
    for step in instances:
        step.embeddings_file = path


def write_embeddings_file(path: str, ids: Sequence[str], vectors: np.ndarray, model: str) -> None:
    """Writes an .npz of evaluation embeddings (module docstring) that eval_embeddings reads."""
    buffer = io.BytesIO()
    np.savez(
        buffer,
        ids=np.array(list(ids), dtype=str),
        vectors=np.asarray(vectors, dtype=EMBEDDING_DTYPE).reshape(len(ids), -1),
        model=np.array(model),
    )
    write_bytes_atomic(path, buffer.getvalue())


def read_embeddings_file(path: str) -> tuple[list[str], np.ndarray, str]:
    """(ids, float16 vectors, model) of an .npz that write_embeddings_file wrote."""
    with FileSystems.open(path) as fh:
        data = fh.read()
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            ids, vectors, model = [str(i) for i in npz["ids"]], npz["vectors"], str(npz["model"])
    except Exception as exc:
        raise ConfigError(
            f"decontaminate.sets: {path} is not an embeddings file ({exc}); write it with "
            "`vlcurate hashes DIR --embeddings FILE.npz`"
        ) from None
    if vectors.ndim != 2 or len(vectors) != len(ids):
        raise ConfigError(
            f"decontaminate.sets: {path} holds {len(ids)} ids but vectors of shape {vectors.shape}"
        )
    return ids, vectors.astype(EMBEDDING_DTYPE), model


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
