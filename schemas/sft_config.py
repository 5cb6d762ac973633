"""Configuration of `vlcurate sft`: inputs, construction knobs, output. Loaded strictly (unknown keys fail
with the valid ones) through schemas.config.from_dict; relative paths are relative to the config file.

Example (every key but `inputs` has a default):

    inputs:
      - {name: web, kind: pairs, paths: [../clean]}           # `vlcurate clean` output directories
      - {name: shapes_cap, kind: captions, paths: [captions.jsonl]}
      - {name: shapes_vqa, kind: vqa, paths: [vqa/*.jsonl], image_root: images}
      - {name: shapes_box, kind: grounding, paths: [grounding.jsonl]}
      - {name: chat, kind: text, paths: [text.jsonl]}
    output: {dir: sft, samples_per_shard: 1000, overwrite: false}
    seed: 0
    model_max_length: 2048
    multi_image: {share: 0.2, min_images: 2, max_images: 3}
    text_share: 0.1
    workers: 1
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

from vlcurate.schemas.config import check_name_and_paths, from_dict, read_yaml_config, resolve_path
from vlcurate.schemas.errors import ConfigError, unknown_name_error
from vlcurate.schemas.image_paths import DEFAULT_MAX_IMAGE_BYTES

# One picture in an SFT turn, `Picture n: <img>...</img>\n` (docs/qwenvl-format.md section 3), and what a first
# turn needs besides its pictures (system block, turn structure, a short question and answer).
IMAGE_TOKENS = 264
_FIRST_TURN_ROOM = 128
# pairs: cleaned pair directories; the others are JSONL files (schemas in formatters/sft.py).
INPUT_KINDS = ("pairs", "captions", "vqa", "grounding", "text")


def _share(value: Any, where: str, high_open: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not 0 <= value <= 1 or (high_open and value == 1):
        raise ConfigError(f"{where} must be a number in [0, 1{')' if high_open else ']'}, got {value!r}.")
    return float(value)


@dataclasses.dataclass
class SftInputConfig:
    """One input. `name` prefixes the ids of its samples. JSONL image paths resolve against `image_root`,
    else the JSONL file's folder; `pairs` paths are directories holding a completed `clean` run."""

    name: str
    kind: str
    paths: list[str]
    image_root: str | None = None
    # As for `clean` sources (schemas/config.py, SourceConfig): image paths must resolve inside the image
    # root unless true; larger images are rejected as image_too_large.
    allow_outside_root: bool = False
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES

    def __post_init__(self) -> None:
        if self.kind not in INPUT_KINDS:
            raise unknown_name_error("input kind", self.kind, INPUT_KINDS, f"input {self.name!r}")
        self.paths = check_name_and_paths("input", self.name, self.paths)
        if self.max_image_bytes < 1:
            raise ConfigError(f"input {self.name!r}: max_image_bytes must be >= 1 (bytes).")


@dataclasses.dataclass
class SftOutputConfig:
    dir: str = "sft"
    samples_per_shard: int = 1000
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.samples_per_shard < 1:
            raise ConfigError("output.samples_per_shard must be >= 1.")


@dataclasses.dataclass
class MultiImageConfig:
    """`share` of the caption and VQA images (chosen by seeded hash) go into multi-image dialogues of
    `min_images`..`max_images` images; leftovers too few for a group stay single-image dialogues."""

    share: float = 0.2
    min_images: int = 2
    max_images: int = 3

    def __post_init__(self) -> None:
        self.share = _share(self.share, "multi_image.share")
        if not 2 <= self.min_images <= self.max_images:
            raise ConfigError("multi_image needs 2 <= min_images <= max_images.")


@dataclasses.dataclass
class SftConfig:
    """`text_share`: pure-text dialogues make up at most this fraction of the built dialogues (fewer when
    the text inputs run out); which ones is chosen by seeded hash."""

    inputs: list[SftInputConfig]
    output: SftOutputConfig = dataclasses.field(default_factory=SftOutputConfig)
    seed: int = 0
    model_max_length: int = 2048
    multi_image: MultiImageConfig = dataclasses.field(default_factory=MultiImageConfig)
    text_share: float = 0.1
    workers: int = 1

    def __post_init__(self) -> None:
        names = [i.name for i in self.inputs]
        if not names:
            raise ConfigError("the config has no inputs: add `inputs: [{name, kind, paths}]`.")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"input names must be unique; repeated: {', '.join(dupes)}.")
        self.text_share = _share(self.text_share, "text_share", high_open=True)
        # 11 system tokens + one image (264) + structure leave no room below this.
        if self.model_max_length < 300:
            raise ConfigError("model_max_length must be >= 300 (one image alone costs 264 tokens).")
        if self.workers < 1:
            raise ConfigError("workers must be >= 1.")
        # A multi-image dialogue may show all its pictures in its first turn: they must fit together.
        fit = (self.model_max_length - _FIRST_TURN_ROOM) // IMAGE_TOKENS
        if self.multi_image.max_images > fit:
            raise ConfigError(
                f"multi_image.max_images must be <= {fit}: {IMAGE_TOKENS} tokens per picture and room for "
                f"the question and answer must fit model_max_length {self.model_max_length}."
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def sft_config_from_dict(data: Any, where: str = "config", base: str | None = None) -> SftConfig:
    """Builds the config; with `base`, relative paths are resolved against that folder."""
    config = from_dict(SftConfig, data, where=where)
    if base is not None:
        for item in config.inputs:
            item.paths = [resolve_path(p, base) for p in item.paths]
            if item.image_root is not None:
                item.image_root = resolve_path(item.image_root, base)
        config.output.dir = resolve_path(config.output.dir, base)
    return config


def load_sft_config(path: str) -> SftConfig:
    """Reads a YAML config; relative paths inside it are taken relative to the file's folder."""
    data = read_yaml_config(path)
    return sft_config_from_dict(data, os.path.basename(path), os.path.dirname(os.path.abspath(path)))
