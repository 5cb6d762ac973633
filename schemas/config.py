"""Configuration dataclasses and their strict YAML loader.

Unknown keys fail at start-up with the valid keys and a close-match suggestion, before any data is read.
Relative paths in a config file are relative to that file, so a config travels with its data.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from typing import Any

import yaml

from vlcurate.schemas.errors import ConfigError, unknown_name_error
from vlcurate.schemas.image_paths import DEFAULT_MAX_IMAGE_BYTES
from vlcurate.schemas.typecheck import check_value, describe

INPUT_FORMATS = ("webdataset", "parquet", "jsonl", "csv")
OUTPUT_IMAGE_FORMATS = ("jpg", "keep")


@dataclasses.dataclass
class SourceConfig:
    """One input dataset. `name` becomes every record's `source` (thresholds are per source)."""

    name: str
    format: str
    paths: list[str]
    caption_column: str = "caption"
    # None for caption-only data: the image steps are then left out (text-only cleaning).
    image_column: str | None = "image"
    key_column: str = "key"
    # Folder that relative image paths (Parquet path columns, JSONL/CSV) are resolved against.
    image_root: str | None = None
    # Image paths must lie inside image_root (default: the input file's folder) once symlinks and `..` are
    # resolved, else the pair is rejected as image_outside_root; true reads them wherever they are.
    allow_outside_root: bool = False
    # Larger images (files by path, tar members, Parquet bytes) are rejected as image_too_large; a file is
    # never read past it (schemas/image_paths.py says why 64 MiB).
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    # Per-source step parameter overrides: {step name: {parameter: value}}.
    steps: dict[str, dict[str, Any]] = dataclasses.field(
        default_factory=dict, metadata={"example": "steps: {clip_filter: {keep_fraction: 0.5}}"}
    )

    def __post_init__(self) -> None:
        if self.format not in INPUT_FORMATS:
            raise unknown_name_error("input format", self.format, INPUT_FORMATS, f"source {self.name!r}")
        self.paths = check_name_and_paths("source", self.name, self.paths)
        if self.max_image_bytes < 1:
            raise ConfigError(f"source {self.name!r}: max_image_bytes must be >= 1 (bytes).")


def check_name_and_paths(what: str, name: str, paths: list[str] | str) -> list[str]:
    """A named input needs a name usable in uids (no '/') and at least one path; returns the paths."""
    paths = [paths] if isinstance(paths, str) else paths
    if not paths:
        raise ConfigError(f"{what} {name!r} has no paths: give `paths: [path or glob, ...]`.")
    if not name or "/" in name:
        raise ConfigError(f"{what} name {name!r} must be non-empty and contain no '/'.")
    return paths


@dataclasses.dataclass
class OutputConfig:
    dir: str = "out"
    pairs_per_shard: int = 1000
    overwrite: bool = False
    # Kept images in local uncompressed input files are read back by the shard writer rather than
    # carried through its shuffle (pipelines/image_spans.py); false carries them (input may change).
    reread_images: bool = True
    # "jpg": kept images that are not JPEG are re-encoded as JPEG (quality 95, alpha onto white), so every
    # shard has one image extension, which HF datasets' webdataset loader requires; "keep": the input's
    # bytes and extensions (formatters/shard_images.py). Shards record the original format either way.
    image_format: str = "jpg"
    # Each shard's CLIP image embeddings (normalized, float16) in embeddings/img_emb/img_emb_NNNNN.npy, one
    # row per kept pair scored by CLIP, in the shard's order, with embeddings/metadata/metadata_NNNNN.parquet
    # naming each row's uid (clip-retrieval's layout): for `vlcurate dedup --semantic` and retrieval.
    # Needs clip_score on; a source without CLIP gets no rows.
    embeddings: bool = False

    def __post_init__(self) -> None:
        if self.pairs_per_shard < 1:
            raise ConfigError("output.pairs_per_shard must be >= 1.")
        if self.image_format not in OUTPUT_IMAGE_FORMATS:
            raise unknown_name_error("output.image_format", self.image_format, OUTPUT_IMAGE_FORMATS)


@dataclasses.dataclass
class CleanConfig:
    """What `vlcurate clean` runs. `steps` overrides default step parameters for every source."""

    sources: list[SourceConfig] = dataclasses.field(
        metadata={"example": "sources: [{name: web, format: webdataset, paths: [shards/*.tar]}]"}
    )
    output: OutputConfig = dataclasses.field(default_factory=OutputConfig)
    steps: dict[str, dict[str, Any]] = dataclasses.field(
        default_factory=dict, metadata={"example": "steps: {min_side: {min_side: 256}}"}
    )
    disable: list[str] = dataclasses.field(
        default_factory=list, metadata={"example": "disable: [decode_check]"}
    )
    # Steps that are off by default and should run (filters/registry.py OFF_BY_DEFAULT: semantic_dedup);
    # `disable` wins over it.
    enable: list[str] = dataclasses.field(
        default_factory=list, metadata={"example": "enable: [semantic_dedup]"}
    )
    audit: bool = False
    workers: int = 1
    # The run fails (exit 1, no COMPLETED) when one step rejects more than this share of the pairs that
    # reached it (pipelines/outcome.py); --max-reject-share overrides it.
    max_reject_share: float | None = None

    def __post_init__(self) -> None:
        names = [s.name for s in self.sources]
        if not names:
            raise ConfigError("the config has no sources: add `sources: [{name, format, paths}]`.")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"source names must be unique; repeated: {', '.join(dupes)}.")
        if self.workers < 1:
            raise ConfigError("workers must be >= 1.")
        share = self.max_reject_share
        if share is not None and (
            isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1
        ):
            raise ConfigError(
                f"max_reject_share (--max-reject-share) must be a number F with 0 < F <= 1, got {share!r}."
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def from_dict(cls: type, data: Any, where: str = "config", example: str = "") -> Any:
    """Builds dataclass `cls` from plain data, refusing unknown keys, missing required ones and values of
    the wrong type. `example` (a field's metadata) shows the right shape in the message."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {describe(data)}{_example(example)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            raise unknown_name_error("key", key, fields, where)
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, field in fields.items():
        if name in data:
            kwargs[name] = _convert(
                hints[name], data[name], f"{where}.{name}", field.metadata.get("example", "")
            )
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where} is missing the required key {name!r}.")
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a wrong value type that slipped through
        raise ConfigError(f"{where}: {exc}") from exc


def _example(example: str) -> str:
    return f", e.g. {example}" if example else ""


def _convert(hint: Any, value: Any, where: str, example: str = "") -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
        return _convert(hint, value, where, example)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where, example)
    if origin is list:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list, got {describe(value)}{_example(example)}")
        return [_convert(args[0], v, f"{where}[{i}]", example) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {describe(value)}{_example(example)}")
        # Values are left to their owner: step parameters are checked against the steps (filters/).
        return {k: ({} if v is None else v) for k, v in value.items()}
    check_value(hint, value, where)
    return value


def read_yaml_config(path: str) -> Any:
    """A config file's YAML content ({} when empty); a missing or malformed file is a ConfigError."""
    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.safe_load(fh) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file {path!r} does not exist.") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path!r} is not valid YAML: {exc}") from None


def load_clean_config(path: str) -> CleanConfig:
    """Reads a YAML config; relative paths inside it are taken relative to the file's folder."""
    data = read_yaml_config(path)
    config = from_dict(CleanConfig, data, where=os.path.basename(path))
    base = os.path.dirname(os.path.abspath(path))
    for source in config.sources:
        source.paths = [resolve_path(p, base) for p in source.paths]
        if source.image_root is not None:
            source.image_root = resolve_path(source.image_root, base)
    if "dir" in (data.get("output") or {}):
        config.output.dir = resolve_path(config.output.dir, base)
    return config


def absolute_path(path: str) -> str:
    """A local path made absolute against this process's working directory, `~` expanded; URLs left
    alone. Jobs call it at launch: a worker on another machine has another working directory."""
    return resolve_path(os.path.expanduser(path), os.getcwd())


def resolve_path(path: str, base: str) -> str:
    """Joins a relative local path to `base`; leaves absolute paths and URLs (gs://, s3://) alone."""
    if "://" in path or os.path.isabs(path):
        return path
    return os.path.normpath(os.path.join(base, path))
