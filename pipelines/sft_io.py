"""Files of `vlcurate sft`: reading its inputs, writing shards, images and rejects (its stats are
formatters/sft_stats.py). Plain functions; pipelines/sft.py wraps them in Beam.

Output directory (paths relative to it; training runs with it as the working directory, or with its path
prepended to every image path):

    shards/sft-00000.json    JSON array of {"id", "conversations"}: finetune.py's --data_path
    shards/sft-00000.jsonl   the same samples, one per line (streaming loaders)
    images/ab/ab12...ef.jpg  every image a sample names, named by content hash (<= 40 bytes)
    rejects/rejects-00000.jsonl   {"id", "input", "kind", "reason", "detail"} per rejected record/sample
    info.json, stats.json, COMPLETED (last)
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from apache_beam.io.filesystems import FileSystems
from PIL import Image

from vlcurate.filters.image_probe import DecodeCheck, ProbeImage
from vlcurate.formatters.sft import SftReject
from vlcurate.formatters.sft_dialogue import ImageItem
from vlcurate.formatters.sft_records import (
    caption_item,
    grounding_item,
    parse_guard,
    record_id,
    text_dialogue,
    vqa_item,
)
from vlcurate.formatters.stage1 import RejectSample
from vlcurate.formatters.webdataset import EXTENSION_OF_FORMAT
from vlcurate.pipelines.load_images import load_image_bytes, read_image
from vlcurate.pipelines.output import ensure_dir, join, require_completed, write_bytes_atomic
from vlcurate.pipelines.read import read_file
from vlcurate.pipelines.write import shard_name
from vlcurate.schemas.config import SourceConfig
from vlcurate.schemas.errors import ConfigError
from vlcurate.schemas.image_paths import ImageRejected, outside_root, resolve_image_path
from vlcurate.schemas.record import Pair
from vlcurate.schemas.sft_config import SftInputConfig

IMAGES = "images"


# --- inputs --------------------------------------------------------------------------------------------


def input_files(spec: SftInputConfig) -> list[str]:
    """The files of one input, matched when the pipeline is built: a glob matching nothing, or a `pairs`
    directory without COMPLETED, fails before any data is read."""
    patterns = spec.paths
    if spec.kind == "pairs":
        for directory in spec.paths:
            require_completed(directory)
        patterns = [join(d, "shards", "*.tar") for d in spec.paths]
    files: list[str] = []
    for pattern in patterns:
        found = [m.path for r in FileSystems.match([pattern]) for m in r.metadata_list]
        if not found and spec.kind != "pairs":  # a clean run may have kept nothing
            raise ConfigError(f"input {spec.name!r}: no file matches {pattern!r}; check `paths`.")
        files.extend(found)
    return sorted(set(files))


def image_file(data: bytes | None) -> tuple[str, tuple[int, int]]:
    """(output-relative path, stored pixel size) of image bytes, or RejectSample. The image must decode
    fully (the probe and decode steps of `clean`); the name is a content hash, so equal images are stored
    once and the path stays short."""
    if not data:
        raise RejectSample("image_missing")
    pair = Pair(uid="", source="", image=data)
    for step in (ProbeImage(), DecodeCheck()):
        step.apply(pair)
        if pair.reject:
            raise RejectSample(pair.reject)
    # The trainer opens the file with PIL and no EXIF transpose: boxes refer to the stored pixels.
    with Image.open(io.BytesIO(data)) as img:
        size = img.size
    ext = EXTENSION_OF_FORMAT.get(pair.image_format or "", (pair.image_format or "img").lower())
    digest = hashlib.blake2b(data, digest_size=10).hexdigest()
    return f"{IMAGES}/{digest[:2]}/{digest}.{ext}", size


def _reject_row(spec: SftInputConfig, item_id: str, exc: RejectSample) -> dict[str, Any]:
    return {"id": item_id, "input": spec.name, "kind": spec.kind, "reason": exc.reason, "detail": exc.detail}


def _read_image(spec: SftInputConfig, path: str, root: str) -> bytes:
    """The image file a record names, as `clean` reads one (pipelines/load_images.py): inside the input's
    image root unless allow_outside_root, never a device or FIFO, at most max_image_bytes."""
    outside = None if spec.allow_outside_root else outside_root(path, root)
    if outside is not None:
        raise RejectSample("image_outside_root", outside)
    try:
        return read_image(path, spec.max_image_bytes)
    except ImageRejected as exc:
        raise RejectSample(exc.reason, str(exc)) from None


def read_input_file(spec: SftInputConfig, path: str) -> Iterator[tuple[str, Any]]:
    """Every record of one input file as tagged values, in file order:
    ("item", ImageItem), ("text", Dialogue), ("image", (relative path, bytes)) once per image and file,
    ("reject", row) for a record that cannot be used. Bad data never raises."""
    if spec.kind == "pairs":
        yield from _read_pairs(spec, path)
        return
    stem = posixpath.basename(path).split(".", 1)[0]
    folder = posixpath.dirname(path) if "://" in path else os.path.dirname(path)
    images: dict[str, tuple[str, tuple[int, int]] | RejectSample] = {}  # resolved path -> result
    try:
        with FileSystems.open(path) as fh:
            # Split on "\n" only: JSON text may hold a raw U+2028, which str.splitlines() breaks on.
            lines = io.TextIOWrapper(fh, encoding="utf-8", newline="").read().split("\n")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        yield (
            "reject",
            _reject_row(spec, f"{spec.name}/{stem}", RejectSample("file_unreadable", str(exc)[:300])),
        )
        return
    for number, line in enumerate(lines):
        if not line.strip():
            continue
        item_id = f"{spec.name}/{stem}-{number:09d}"
        try:
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RejectSample("bad_json", str(exc)[:200]) from None
            if not isinstance(record, dict):
                raise RejectSample("bad_record", "a JSONL line must be an object")
            item_id = f"{spec.name}/{record_id(record, item_id[len(spec.name) + 1 :])}"
            if spec.kind == "text":
                yield "text", text_dialogue(item_id, record)
                continue
            ref = record.get("image")
            if not isinstance(ref, str) or not ref:
                raise RejectSample("missing_field", "image")
            root = spec.image_root or folder
            source = resolve_image_path(ref, root)
            if source not in images:
                try:
                    data = _read_image(spec, source, root)
                    images[source] = image_file(data)
                    yield "image", (images[source][0], data)
                except RejectSample as exc:
                    images[source] = exc
            found = images[source]
            if isinstance(found, RejectSample):
                raise found
            yield "item", _item(spec, item_id, record, *found)
        except RejectSample as exc:
            yield "reject", _reject_row(spec, item_id, exc)


def _item(spec: SftInputConfig, item_id: str, record: dict, image: str, size: tuple[int, int]) -> ImageItem:
    if spec.kind == "captions":
        return caption_item(item_id, record.get("caption"), record.get("lang"), image)
    if spec.kind == "vqa":
        return vqa_item(item_id, record, image)
    return parse_guard(lambda: grounding_item(item_id, record, image, size))


def _read_pairs(spec: SftInputConfig, path: str) -> Iterator[tuple[str, Any]]:
    source = SourceConfig(name=spec.name, format="webdataset", paths=[path])
    for pair in read_file(source, path):  # the reader `clean` itself uses for its tar shards
        load_image_bytes(pair, spec.max_image_bytes)  # the size cap on tar members
        item_id = f"{spec.name}/{pair.meta.get('uid') or pair.key}"
        try:
            if pair.reject is not None:
                raise RejectSample(pair.reject, str(pair.meta.get("error", "")))
            image, _ = image_file(pair.image)
            yield "image", (image, pair.image)
            yield "item", caption_item(item_id, pair.caption, pair.meta.get("lang"), image)
        except RejectSample as exc:
            yield "reject", _reject_row(spec, item_id, exc)


# --- outputs -------------------------------------------------------------------------------------------


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def shard_files(samples: Iterable[Mapping[str, Any]]) -> tuple[bytes, bytes]:
    """(JSON array, JSONL) bytes of one shard; samples sorted by id (then content) for stable bytes. The
    array holds one sample per line so that it diffs and greps well; json.load reads it as one array."""
    lines = sorted((s["id"], _dumps(s)) for s in samples)
    body = ",\n".join(line for _, line in lines)
    array = f"[\n{body}\n]\n" if lines else "[]\n"
    jsonl = "".join(line + "\n" for _, line in lines)
    return array.encode("utf-8"), jsonl.encode("utf-8")


def write_shard(
    directory: str, index: int, count: int, samples: Iterable[Mapping[str, Any]]
) -> dict[str, Any]:
    samples = list(samples)
    array, jsonl = shard_files(samples)
    name = f"sft-{shard_name(index, count)}"
    ensure_dir(join(directory, "shards"))
    write_bytes_atomic(join(directory, "shards", f"{name}.json"), array)
    write_bytes_atomic(join(directory, "shards", f"{name}.jsonl"), jsonl)
    return {"json": f"shards/{name}.json", "jsonl": f"shards/{name}.jsonl", "samples": len(samples)}


def write_image(directory: str, relative: str, data: bytes) -> str:
    """One image under the output root; its name is its content hash, so one writer per name suffices."""
    ensure_dir(join(directory, posixpath.dirname(relative)))
    write_bytes_atomic(join(directory, relative), data)
    return relative


def write_reject_file(directory: str, index: int, count: int, rows: Iterable[Mapping[str, Any]]) -> dict:
    lines = sorted(_dumps({k: row[k] for k in ("id", "input", "kind", "reason", "detail")}) for row in rows)
    name = f"rejects-{shard_name(index, count)}.jsonl"
    ensure_dir(join(directory, "rejects"))
    write_bytes_atomic(join(directory, "rejects", name), "".join(f"{line}\n" for line in lines).encode())
    return {"file": f"rejects/{name}", "rows": len(lines)}


def sample_reject_row(reject: SftReject) -> dict[str, Any]:
    return {
        "id": reject.id,
        "input": reject.id.split("/", 1)[0],
        "kind": reject.kind,
        "reason": reject.reason,
        "detail": reject.detail,
    }
