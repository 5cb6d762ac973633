"""The size of a Qwen-VL-architecture model (model/qwenvl.py), as a JSON file of our own format.

    {"vision": {"image_size": 448, "patch_size": 28, "width": 64, "layers": 2, "heads": 4,
                "mlp_ratio": 4.0, "pos_grid": 8},
     "adapter": {"queries": 256, "heads": 4},
     "decoder": {"vocab_size": 151936, "hidden_size": 64, "layers": 4, "heads": 4,
                 "intermediate_size": 344, "rms_norm_eps": 1e-6, "rotary_base": 10000.0,
                 "tie_word_embeddings": true}}

`pos_grid` is the grid the ViT's learned position embedding is stored for (Qwen-VL: 16); it is
bicubically interpolated to the patch grid (image_size // patch_size). The adapter's output width is the
decoder's hidden size (Qwen-VL's `output_dim`). Every field has the compact bundled model's value as its
default; `from_json` refuses unknown keys and impossible sizes with a ConfigError that names the field.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from vlcurate.model.qwen_tokenizer import IMAGE_SLOTS
from vlcurate.schemas.errors import ConfigError

QWEN_VL_VOCAB = 151936  # Qwen-VL's config.json vocab_size (the tokenizer uses ids up to 151859)


@dataclasses.dataclass(frozen=True)
class VisionConfig:
    image_size: int = 448
    patch_size: int = 28
    width: int = 64
    layers: int = 2
    heads: int = 4
    mlp_ratio: float = 4.0
    pos_grid: int = 8

    @property
    def grid(self) -> int:
        """Patches per side."""
        return self.image_size // self.patch_size

    @property
    def mlp_width(self) -> int:
        return int(self.width * self.mlp_ratio)  # as Qwen-VL's VisualAttentionBlock rounds it


@dataclasses.dataclass(frozen=True)
class AdapterConfig:
    queries: int = IMAGE_SLOTS
    heads: int = 4


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
    vocab_size: int = QWEN_VL_VOCAB
    hidden_size: int = 64
    layers: int = 4
    heads: int = 4
    intermediate_size: int = 344  # Qwen's convention: the SwiGLU branches are intermediate_size // 2 wide
    rms_norm_eps: float = 1e-6
    rotary_base: float = 10000.0
    tie_word_embeddings: bool = True


@dataclasses.dataclass(frozen=True)
class QwenVLConfig:
    vision: VisionConfig = dataclasses.field(default_factory=VisionConfig)
    adapter: AdapterConfig = dataclasses.field(default_factory=AdapterConfig)
    decoder: DecoderConfig = dataclasses.field(default_factory=DecoderConfig)

    def __post_init__(self) -> None:
        validate(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: object, where: str = "config") -> QwenVLConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"{where} must be a JSON object with vision, adapter and decoder")
        _unknown(data, ("vision", "adapter", "decoder"), where)
        parts = {}
        for name, kind in (("vision", VisionConfig), ("adapter", AdapterConfig), ("decoder", DecoderConfig)):
            section = data.get(name, {})
            if not isinstance(section, dict):
                raise ConfigError(f"{where}: {name} must be an object")
            fields = {f.name: f for f in dataclasses.fields(kind)}
            _unknown(section, fields, f"{where}: {name}")
            parts[name] = kind(
                **{k: _typed(v, fields[k], f"{where}: {name}.{k}") for k, v in section.items()}
            )
        return cls(**parts)

    @classmethod
    def from_json(cls, path: str) -> QwenVLConfig:
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except OSError as exc:
            raise ConfigError(f"cannot read the model config {path}: {exc.strerror or exc}") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path} is not JSON: {exc}") from None
        return cls.from_dict(data, where=path)

    def to_json(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(self.to_dict(), fh, indent=1)
            fh.write("\n")


def _unknown(data: dict, valid, where: str) -> None:
    extra = sorted(set(data) - set(valid))
    if extra:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(extra)}; valid: {', '.join(sorted(valid))}")


def _typed(value: object, field: dataclasses.Field, where: str) -> object:
    kind = field.type if isinstance(field.type, str) else field.type.__name__
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where} must be a number, got {value!r}")
    if kind == "int":
        if value != int(value):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return int(value)
    return float(value)


def validate(config: QwenVLConfig) -> None:
    """ConfigError naming the first field that makes the model impossible to build or to place images."""
    v, a, d = config.vision, config.adapter, config.decoder
    positive = {
        "vision.image_size": v.image_size,
        "vision.patch_size": v.patch_size,
        "vision.width": v.width,
        "vision.layers": v.layers,
        "vision.heads": v.heads,
        "vision.pos_grid": v.pos_grid,
        "vision.mlp_ratio": v.mlp_ratio,
        "adapter.heads": a.heads,
        "decoder.vocab_size": d.vocab_size,
        "decoder.hidden_size": d.hidden_size,
        "decoder.layers": d.layers,
        "decoder.heads": d.heads,
        "decoder.intermediate_size": d.intermediate_size,
        "decoder.rms_norm_eps": d.rms_norm_eps,
        "decoder.rotary_base": d.rotary_base,
    }
    for name, value in positive.items():
        if not value > 0 or (isinstance(value, float) and not math.isfinite(value)):
            raise ConfigError(f"model config: {name} must be > 0, got {value}")
    if v.image_size % v.patch_size:
        raise ConfigError(
            f"model config: vision.image_size {v.image_size} is not a multiple of patch_size {v.patch_size}"
        )
    if v.width % v.heads:
        raise ConfigError(f"model config: vision.width {v.width} is not divisible by heads {v.heads}")
    if a.queries != IMAGE_SLOTS:
        # The tokenizer's image span has exactly IMAGE_SLOTS slots for the adapter's outputs.
        raise ConfigError(f"model config: adapter.queries must be {IMAGE_SLOTS} (slots per image span)")
    if d.hidden_size % a.heads:
        raise ConfigError(
            f"model config: adapter.heads {a.heads} does not divide hidden_size {d.hidden_size}"
        )
    if d.hidden_size % 4:
        raise ConfigError("model config: decoder.hidden_size must be a multiple of 4 (2-D sin-cos embedding)")
    head_dim, rest = divmod(d.hidden_size, d.heads)
    if rest or head_dim % 2:
        raise ConfigError(
            f"model config: decoder.hidden_size {d.hidden_size} / heads {d.heads} must be an even integer"
        )
    if d.intermediate_size % 2:
        raise ConfigError(f"model config: decoder.intermediate_size {d.intermediate_size} must be even")
    if d.vocab_size <= 151859:
        raise ConfigError(f"model config: decoder.vocab_size {d.vocab_size} must exceed 151859 (<imgpad>)")
