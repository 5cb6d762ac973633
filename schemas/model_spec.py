"""How a config names a CLIP model: `name` or `name@pretrained` (see model/clip_models.py for loading)."""

from __future__ import annotations

import dataclasses

from vlcurate.schemas.errors import ConfigError

DEFAULT_BUNDLED = "bundled:tiny-synth-clip"
# The model `vlcurate check` scores samples with unless told otherwise (model/qwenvl_weights.py loads it).
DEFAULT_CHECK_MODEL = "bundled:compact-qwenvl"


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
