"""How a config names a CLIP model: `name` or `name@pretrained` (see model/clip_models.py for loading)."""

from __future__ import annotations

import dataclasses
import os

from vlcurate.schemas.config import absolute_path
from vlcurate.schemas.errors import ConfigError

DEFAULT_BUNDLED = "bundled:tiny-synth-clip"
# The model `vlcurate check` scores samples with unless told otherwise (model/qwenvl_weights.py loads it).
DEFAULT_CHECK_MODEL = "bundled:compact-qwenvl"


# Spec prefixes whose rest is a local folder (CLIP's and the check model's).
FOLDER_PREFIXES = ("local-dir:", "qwen-vl:")


def absolute_model_spec(spec: str) -> str:
    """`spec` with a relative local folder or checkpoint made absolute against this process's working
    directory (`local-dir:PATH`, `qwen-vl:PATH`, `ARCH@PATH` where PATH names a file); hub names, bundled
    models and pretrained tags (`ViT-L-14@openai`) unchanged. Jobs call it at launch, before workers
    (with other working directories) load the model."""
    if not isinstance(spec, str):
        return spec
    for prefix in FOLDER_PREFIXES:
        if spec.startswith(prefix):
            return prefix + absolute_path(spec[len(prefix) :])
    name, at, pretrained = spec.partition("@")
    if at and ("/" in pretrained or os.path.exists(pretrained)):  # a checkpoint file, not a tag
        return f"{name}@{absolute_path(pretrained)}"
    return spec


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    pretrained: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(
                f"empty CLIP model spec {text!r}: write e.g. ViT-L-14@openai or {DEFAULT_BUNDLED}."
            )
        name, _, pretrained = text.strip().partition("@")
        return cls(name, pretrained or None)

    def __str__(self) -> str:
        return f"{self.name}@{self.pretrained}" if self.pretrained else self.name
