"""Loading open_clip models by name, offline first.

A model spec is `name` or `name@pretrained`:
- `bundled:<folder>`: a model shipped in vlcurate/model/weights/<folder> (open_clip's local-dir layout);
- `local-dir:/path`: a folder with open_clip_config.json + open_clip_model.safetensors (or .bin);
- `hf-hub:org/repo`: a Hugging Face Hub repo in open_clip's layout (downloads unless cached);
- `ViT-L-14@openai`: an open_clip architecture and pretrained tag (downloads unless cached);
- `ViT-L-14@/path/to/checkpoint.pt`: an architecture with a local checkpoint;
- `ViT-L-14@random`: random weights (seeded: the same on every load), for speed benchmarks only.
A model that cannot be had is a ClipModelError that says what to pass instead; with HF_HUB_OFFLINE=1
nothing is retried against the hub.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import threading
from collections.abc import Iterator
from typing import Any

from vlcurate.model.clip_tokens import FastClipTokenizer
from vlcurate.schemas.errors import ConfigError
from vlcurate.schemas.model_spec import ModelSpec

WEIGHTS_DIR = os.path.join(os.path.dirname(__file__), "weights")
BUNDLED_PREFIX = "bundled:"
LOCAL_DIR_PREFIX = "local-dir:"
HF_HUB_PREFIX = "hf-hub:"
RANDOM = "random"
CHECKPOINT_NAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")

_OPTIONS = (
    "Pass one of: a bundled model (bundled:tiny-synth-clip), a local folder "
    "(local-dir:/path holding open_clip_config.json + open_clip_model.safetensors), an architecture with a "
    "local checkpoint (ViT-L-14@/path/to/model.pt), or a hub model (ViT-L-14@openai, hf-hub:org/repo) "
    "with network access or a filled Hugging Face cache (HF_HUB_OFFLINE=1 uses the cache only)."
)


class ClipModelError(ConfigError):
    """The CLIP model named in the config cannot be loaded."""


def bundled_models() -> list[str]:
    if not os.path.isdir(WEIGHTS_DIR):
        return []
    return sorted(
        d
        for d in os.listdir(WEIGHTS_DIR)
        if os.path.isfile(os.path.join(WEIGHTS_DIR, d, "open_clip_config.json"))
    )


def resolve(spec: ModelSpec) -> tuple[str, str | None]:
    """Returns (open_clip model name, pretrained) after checking that local weights exist.

    Raises ClipModelError for anything that cannot be loaded, before any model is built.
    """
    name = spec.name
    if name.startswith(BUNDLED_PREFIX):
        folder = name[len(BUNDLED_PREFIX) :]
        if folder not in bundled_models():
            raise ClipModelError(
                f"no bundled CLIP model {folder!r}; bundled: {', '.join(bundled_models())}. {_OPTIONS}"
            )
        name = LOCAL_DIR_PREFIX + os.path.join(WEIGHTS_DIR, folder)
    if name.startswith(LOCAL_DIR_PREFIX):
        folder = name[len(LOCAL_DIR_PREFIX) :]
        if not os.path.isfile(os.path.join(folder, "open_clip_config.json")):
            raise ClipModelError(f"{folder} has no open_clip_config.json. {_OPTIONS}")
        if not any(os.path.isfile(os.path.join(folder, c)) for c in CHECKPOINT_NAMES):
            # open_clip would only warn and go on with random weights: scores would be noise.
            raise ClipModelError(f"{folder} has no weights ({' or '.join(CHECKPOINT_NAMES)}). {_OPTIONS}")
        return name, None
    if name.startswith(HF_HUB_PREFIX):
        return name, None
    import open_clip

    if name not in open_clip.list_models():
        raise ClipModelError(f"unknown open_clip architecture {name!r}. {_OPTIONS}")
    pretrained = spec.pretrained
    if pretrained is None:
        raise ClipModelError(f"{name} needs weights: write {name}@<tag or checkpoint path>. {_OPTIONS}")
    if pretrained == RANDOM:
        return name, None
    if os.path.isfile(pretrained):
        return name, pretrained
    tags = open_clip.list_pretrained_tags_by_model(name)
    if pretrained not in tags:
        raise ClipModelError(
            f"{pretrained!r} is neither a file nor a pretrained tag of {name} "
            f"(tags: {', '.join(tags)}). {_OPTIONS}"
        )
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        _require_cached(name, pretrained)
    return name, pretrained


def _require_cached(name: str, tag: str) -> None:
    """Offline, a hub tag must already be in the local cache; say so now rather than on a worker."""
    from open_clip.pretrained import download_pretrained, get_pretrained_cfg

    try:
        download_pretrained(get_pretrained_cfg(name, tag))  # offline mode: a cache lookup, no retries
    except Exception as exc:
        raise ClipModelError(
            f"{name}@{tag} is not in the local cache and HF_HUB_OFFLINE=1 forbids "
            f"downloading it ({type(exc).__name__}). {_OPTIONS}"
        ) from None


@dataclasses.dataclass
class LoadedClip:
    spec: str
    model: Any  # open_clip.CLIP
    tokenizer: Any
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    device: str
    dtype: Any
    encode_image: Any = None  # the image encoder to call (compiled on GPU); model.encode_image if None
    pad_to: int = 0  # a compiled encoder gets batches padded to a multiple of this (few static shapes)

    def __post_init__(self) -> None:
        if self.encode_image is None:
            self.encode_image = self.model.encode_image


def load_clip(
    spec: ModelSpec | str, device: str = "cpu", compile: bool = False, fp8: bool = False
) -> LoadedClip:
    """Builds the model in eval mode on `device`: bf16 weights on CUDA (faster than autocast there, and
    scores are normalized cosines that bf16 keeps to ~1e-2), fp32 on CPU. On CUDA, attention runs through
    fused SDPA, and `compile`/`fp8` apply model/clip_fast.py's speed-ups to the image tower."""
    import open_clip
    import torch

    spec = ModelSpec.parse(spec) if isinstance(spec, str) else spec
    name, pretrained = resolve(spec)
    with_weights = spec.pretrained != RANDOM
    try:
        # Random weights are seeded: every load of `@random` is the same model (comparable runs).
        with torch.random.fork_rng(devices=[]), _building(skip_init=with_weights):
            torch.manual_seed(0)
            model, _, preprocess = open_clip.create_model_and_transforms(
                name, pretrained=pretrained, device=device, require_pretrained=with_weights
            )
        tokenizer = FastClipTokenizer(open_clip.get_tokenizer(name))
    except ClipModelError:
        raise
    except Exception as exc:  # hub errors come in many types; all mean "cannot have this model"
        raise ClipModelError(
            f"cannot load CLIP model {spec}: {type(exc).__name__}: {exc}. {_OPTIONS}"
        ) from exc
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    model = model.to(dtype=dtype).eval()
    cfg = model.visual.preprocess_cfg if hasattr(model.visual, "preprocess_cfg") else {}
    size = cfg.get("size", model.visual.image_size)
    size = size[0] if isinstance(size, (tuple, list)) else size
    mean = tuple(cfg.get("mean", open_clip.OPENAI_DATASET_MEAN))
    std = tuple(cfg.get("std", open_clip.OPENAI_DATASET_STD))
    del preprocess
    loaded = LoadedClip(str(spec), model, tokenizer, int(size), mean, std, device, dtype)
    if device.startswith("cuda"):
        from vlcurate.model.clip_fast import speed_up

        loaded.encode_image = speed_up(
            model, fp8=fp8, compile_mode="default" if compile else None, fp8_scaling="static"
        )
        loaded.pad_to = 64 if compile else 0
        if fp8:
            calibrate_image_tower(loaded)
    return loaded


_BUILD_LOCK = threading.Lock()


@contextlib.contextmanager
def _building(skip_init: bool) -> Iterator[None]:
    """Model construction, one at a time in this process. With `skip_init`, torch.nn.init's in-place
    initializers do nothing during the block: open_clip then loads a full checkpoint strictly
    (`require_pretrained`: every parameter and persistent buffer is overwritten, or the load fails), so
    initializing first is wasted, and every worker paid it: loading a ViT-L-14 checkpoint takes 4.93 s
    with it and 1.45 s without on 2 cores (ViT-B-32: 0.79 vs 0.46 s; bench/clip_load.py).
    Buffers computed in constructors (attention masks) and weights drawn with torch.randn are unaffected.
    The lock keeps another thread of this process from building a model (a random one) while the
    initializers are off."""
    import torch

    with _BUILD_LOCK:
        if not skip_init:
            yield
            return
        init = torch.nn.init
        names = [
            n for n in vars(init) if n.endswith("_") and not n.startswith("_") and callable(getattr(init, n))
        ]
        originals = {n: getattr(init, n) for n in names}
        for n in names:
            setattr(init, n, _leave_as_is)
        try:
            yield
        finally:
            for n, original in originals.items():
                setattr(init, n, original)


def _leave_as_is(tensor: Any, *args: Any, **kwargs: Any) -> Any:
    return tensor


# Static fp8 activation scales: the largest activations of these images, times this headroom. Fixed
# images make every worker's scales (and so every score) identical.
FP8_CALIBRATION_IMAGES, FP8_HEADROOM = 64, 4.0


def calibrate_image_tower(loaded: LoadedClip) -> None:
    """Calibrates the image tower's static fp8 layers on deterministic synthetic scenes (eagerly, so a
    compiled encoder traces the calibrated model)."""
    import random

    import numpy as np
    import torch

    from vlcurate.model.clip_fast import calibrate_fp8
    from vlcurate.model.clip_preprocess import normalize
    from vlcurate.model.scenes import random_scene, render

    rng = random.Random(0)
    size = loaded.image_size
    images = [np.asarray(render(random_scene(rng), size, size)) for _ in range(FP8_CALIBRATION_IMAGES)]
    pixels = torch.from_numpy(np.stack(images)).to(loaded.device).permute(0, 3, 1, 2)
    x = normalize(pixels, loaded.mean, loaded.std, loaded.dtype)
    with torch.inference_mode():
        calibrate_fp8(loaded.model.visual, lambda: loaded.model.encode_image(x), headroom=FP8_HEADROOM)


@functools.lru_cache(maxsize=8)
def load_clip_cached(spec: str, device: str = "cpu") -> LoadedClip:
    """One model per (spec, device) per process; tests and the shard checker share it."""
    return load_clip(spec, device)


def image_size_of(spec: ModelSpec | str) -> int:
    """The model's input size from its config alone (no weights loaded), for preprocessing before batching."""
    import json

    import open_clip

    spec = ModelSpec.parse(spec) if isinstance(spec, str) else spec
    name, _ = resolve(spec)
    if name.startswith(LOCAL_DIR_PREFIX):
        with open(os.path.join(name[len(LOCAL_DIR_PREFIX) :], "open_clip_config.json")) as fh:
            config = json.load(fh)
        size = config.get("preprocess_cfg", {}).get("size") or config["model_cfg"]["vision_cfg"]["image_size"]
    else:
        config = open_clip.get_model_config(name)
        if config is None:
            raise ClipModelError(f"cannot read the config of {spec}. {_OPTIONS}")
        size = config["vision_cfg"]["image_size"]
    return int(size[0] if isinstance(size, (list, tuple)) else size)


def weights_file(spec: ModelSpec | str) -> str | None:
    """The local file `spec`'s weights load from, for info.json's sha256: a bundled or local-dir model's
    checkpoint, a checkpoint path, or a hub model's file in the local cache. None for random weights and
    for hub models not cached on this machine. Never downloads."""
    spec = ModelSpec.parse(spec) if isinstance(spec, str) else spec
    name = spec.name
    if name.startswith(BUNDLED_PREFIX):
        name = LOCAL_DIR_PREFIX + os.path.join(WEIGHTS_DIR, name[len(BUNDLED_PREFIX) :])
    if name.startswith(LOCAL_DIR_PREFIX):
        folder = name[len(LOCAL_DIR_PREFIX) :]
        # When both are there open_clip takes the safetensors file, the first of CHECKPOINT_NAMES.
        found = (os.path.join(folder, c) for c in CHECKPOINT_NAMES)
        return next((path for path in found if os.path.isfile(path)), None)
    if name.startswith(HF_HUB_PREFIX):
        return _hub_cached(name[len(HF_HUB_PREFIX) :], "")
    if spec.pretrained in (None, RANDOM):
        return None
    if os.path.isfile(spec.pretrained):
        return spec.pretrained
    from open_clip.pretrained import get_pretrained_cfg

    cfg = get_pretrained_cfg(name, spec.pretrained)
    if cfg.get("hf_hub"):  # "org/repo/" or "org/repo/file.bin", as open_clip splits it
        return _hub_cached(*os.path.split(cfg["hf_hub"]))
    url = cfg.get("url", "")
    cached = os.path.join(os.path.expanduser("~/.cache/clip"), os.path.basename(url))  # open_clip's default
    return cached if url and os.path.isfile(cached) else None


def _hub_cached(repo: str, filename: str) -> str | None:
    """The cached file open_clip would load from a hub repo (a .bin's safetensors twin first), or None."""
    from huggingface_hub import try_to_load_from_cache

    filename = filename or CHECKPOINT_NAMES[1]  # open_clip's default name, open_clip_pytorch_model.bin
    twin = filename.rsplit(".", 1)[0] + ".safetensors" if filename.endswith((".bin", ".pth")) else None
    if filename == CHECKPOINT_NAMES[1]:
        twin = CHECKPOINT_NAMES[0]
    for candidate in (twin, filename):
        found = try_to_load_from_cache(repo, candidate) if candidate else None
        if isinstance(found, str):
            return found
    return None
