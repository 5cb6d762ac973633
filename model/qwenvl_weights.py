"""Loading and saving Qwen-VL-architecture models (model/qwenvl.py) by spec string, offline only.

Specs:
- `bundled:compact-qwenvl` (the default): the model trained here on synthetic scenes, shipped in
  vlcurate/model/weights/compact-qwenvl/ (train_compact_qwenvl.py writes it);
- `local-dir:PATH`: a folder with config.json in our format (model/qwenvl_config.py) + model.safetensors,
  as `save_local_dir` writes it; any size of the architecture;
- `qwen-vl:PATH`: a local Qwen-VL or Qwen-VL-Chat checkpoint in its released Hugging Face layout
  (config.json with `visual: {...}`, safetensors or .bin weights, possibly sharded with an index file).
  Its parameter names (modeling_qwen.py / visual.py) are mapped onto ours by `qwen_vl_name`.
Nothing is downloaded. A spec that cannot be had raises QwenVLModelError (a ConfigError) whose one line
says what to pass instead. Weights load as fp32 on CPU and bf16 on CUDA (`default_device` picks).
"""

from __future__ import annotations

import json
import math
import os

from vlcurate.model.qwen_tokenizer import IMG_START_ID
from vlcurate.model.qwenvl_config import AdapterConfig, DecoderConfig, QwenVLConfig, VisionConfig
from vlcurate.schemas.errors import ConfigError

WEIGHTS_DIR = os.path.join(os.path.dirname(__file__), "weights")
BUNDLED_PREFIX, LOCAL_DIR_PREFIX, QWEN_VL_PREFIX = "bundled:", "local-dir:", "qwen-vl:"
DEFAULT_MODEL = "bundled:compact-qwenvl"
CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"

_OPTIONS = (
    f"Pass {DEFAULT_MODEL} (the default), local-dir:PATH (a folder with config.json + model.safetensors "
    "as save_local_dir writes them) or qwen-vl:PATH (a local Qwen-VL / Qwen-VL-Chat checkpoint folder: "
    "config.json + *.safetensors or *.bin); nothing is downloaded."
)

# Qwen-VL name prefix -> ours; the first match applies (modeling_qwen.py QWenLMHeadModel, visual.py).
_QWEN_VL_PREFIXES = (
    ("transformer.visual.transformer.resblocks.", "visual.blocks."),
    ("transformer.visual.attn_pool.", "visual.adapter."),
    ("transformer.visual.", "visual."),
    ("transformer.", ""),
    ("lm_head.", "lm_head."),
)
# Buffers some Qwen checkpoints carry that our model recomputes (rotary tables, causal masks).
_QWEN_VL_IGNORED = ("rotary_emb.inv_freq", ".attn.bias", ".attn.masked_bias", "logn_tensor")


class QwenVLModelError(ConfigError):
    """The Qwen-VL model named in the config cannot be loaded."""


def default_device() -> str:
    """Where models run unless told otherwise: the GPU when there is one."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def bundled_models() -> list[str]:
    if not os.path.isdir(WEIGHTS_DIR):
        return []
    return sorted(
        d
        for d in os.listdir(WEIGHTS_DIR)
        if os.path.isfile(os.path.join(WEIGHTS_DIR, d, CONFIG_FILE))
        and os.path.isfile(os.path.join(WEIGHTS_DIR, d, WEIGHTS_FILE))
    )


def resolve(spec: str) -> tuple[str, str]:
    """(kind, folder) with kind "local-dir" or "qwen-vl", after checking that the files are there."""
    if not isinstance(spec, str) or not spec.strip():
        raise QwenVLModelError(f"empty model spec {spec!r}. {_OPTIONS}")
    spec = spec.strip()
    if spec.startswith(BUNDLED_PREFIX):
        name = spec[len(BUNDLED_PREFIX) :]
        if name not in bundled_models():
            have = ", ".join(BUNDLED_PREFIX + b for b in bundled_models()) or "none"
            raise QwenVLModelError(f"no bundled Qwen-VL model {name!r} (bundled: {have}). {_OPTIONS}")
        return "local-dir", os.path.join(WEIGHTS_DIR, name)
    for prefix in (LOCAL_DIR_PREFIX, QWEN_VL_PREFIX):
        if spec.startswith(prefix):
            folder = os.path.expanduser(spec[len(prefix) :])
            if not os.path.isdir(folder):
                raise QwenVLModelError(f"{spec}: no folder {folder}. {_OPTIONS}")
            if not os.path.isfile(os.path.join(folder, CONFIG_FILE)):
                raise QwenVLModelError(f"{spec}: {folder} has no {CONFIG_FILE}. {_OPTIONS}")
            kind = prefix[:-1]
            if kind == "local-dir" and not os.path.isfile(os.path.join(folder, WEIGHTS_FILE)):
                raise QwenVLModelError(f"{spec}: {folder} has no {WEIGHTS_FILE}. {_OPTIONS}")
            return kind, folder
    raise QwenVLModelError(
        f"unknown model spec {spec!r} (no bundled:, local-dir: or qwen-vl: prefix). {_OPTIONS}"
    )


def check_spec(spec: str) -> None:
    """QwenVLModelError now if `spec` cannot be loaded (files, config), without reading the weights: for
    checking a job's config before any data is read."""
    kind, folder = resolve(spec)
    if kind == "local-dir":
        _our_config(spec, folder)
    else:
        _checkpoint_files(spec, folder)


def load_model(spec: str = DEFAULT_MODEL, device: str | None = None):
    """(model in eval mode on `device`, its QwenVLConfig). fp32 on CPU, bf16 on CUDA."""
    import torch

    device = device or default_device()
    kind, folder = resolve(spec)
    used_rows = None  # the only non-zero output rows, where the file says so (save_local_dir's wte.ids)
    if kind == "local-dir":
        config = _our_config(spec, folder)
        state = _read_tensors(spec, [os.path.join(folder, WEIGHTS_FILE)])
        used_rows = state.get("wte.ids")
        state = _expand_rows(spec, config, state)
    else:
        state = _read_tensors(spec, _checkpoint_files(spec, folder))
        config = qwen_vl_config(spec, folder, state)
        state = map_qwen_vl_state(spec, state)
    dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    display = qwen_vl_display_name if kind == "qwen-vl" else (lambda name: name)
    model = _build(spec, config, state, dtype, display).to(device).eval()
    model.use_vocab_rows(None if used_rows is None else used_rows.long())
    return model, config


def save_local_dir(model, config: QwenVLConfig, path: str) -> None:
    """config.json + model.safetensors (fp16) in `path`, loadable as `local-dir:PATH`. A tied embedding
    whose rows are mostly zero (a model trained on a small domain) is stored as its non-zero rows
    (`wte.rows`) and their ids (`wte.ids`): 151,936 x hidden fp16 would be most of the file."""
    import torch
    from safetensors.torch import save_file

    os.makedirs(path, exist_ok=True)
    config.to_json(os.path.join(path, CONFIG_FILE))
    state = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in model.state_dict().items()}
    used = _used_rows(state["wte.weight"])
    if config.decoder.tie_word_embeddings and used is not None:
        state["wte.ids"] = used.to(torch.int32)
        state["wte.rows"] = state.pop("wte.weight")[used].contiguous()
    save_file(state, os.path.join(path, WEIGHTS_FILE), metadata={"format": "pt"})


def _used_rows(weight) -> object:
    """The ids of `weight`'s non-zero rows when at most half are non-zero, else None."""
    import torch

    used = torch.nonzero(weight.ne(0).any(dim=1)).squeeze(1)
    return used if used.numel() * 2 <= weight.shape[0] else None


def _expand_rows(spec: str, config: QwenVLConfig, state: dict) -> dict:
    """`wte.rows` + `wte.ids` (save_local_dir's compact embedding) -> the full `wte.weight`."""
    if "wte.rows" not in state and "wte.ids" not in state:
        return state
    import torch

    rows, ids = state.pop("wte.rows", None), state.pop("wte.ids", None)
    vocab = config.decoder.vocab_size
    if rows is None or ids is None or rows.dim() != 2 or ids.shape != rows.shape[:1]:
        raise QwenVLModelError(f"{spec}: wte.rows and wte.ids must come together, one id per row. {_OPTIONS}")
    ids = ids.long()
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab):
        raise QwenVLModelError(f"{spec}: wte.ids holds ids outside the vocabulary of {vocab}. {_OPTIONS}")
    full = torch.zeros(vocab, rows.shape[1], dtype=rows.dtype)
    full[ids] = rows
    return {**state, "wte.weight": full}


# --- our format -----------------------------------------------------------------------------------------


def _our_config(spec: str, folder: str) -> QwenVLConfig:
    path = os.path.join(folder, CONFIG_FILE)
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        raise QwenVLModelError(f"{spec}: cannot read {path}: {exc}. {_OPTIONS}") from None
    if isinstance(data, dict) and "visual" in data and "hidden_size" in data:
        raise QwenVLModelError(f"{spec}: {folder} holds a Qwen-VL checkpoint: pass qwen-vl:{folder}")
    try:
        return QwenVLConfig.from_dict(data, where=path)
    except ConfigError as exc:
        raise QwenVLModelError(f"{spec}: {exc}. {_OPTIONS}") from None


def _read_tensors(spec: str, files: list[str]) -> dict:
    import torch
    from safetensors.torch import load_file

    state = {}
    for path in files:
        try:
            if path.endswith(".safetensors"):
                state.update(load_file(path))
            else:  # pytorch_model*.bin: tensors only, never pickled code
                state.update(torch.load(path, map_location="cpu", weights_only=True, mmap=True))
        except Exception as exc:  # a truncated or foreign file: many error types, one meaning
            raise QwenVLModelError(
                f"{spec}: cannot read weights {path} ({type(exc).__name__}: {exc}). {_OPTIONS}"
            ) from None
    return state


def _build(spec: str, config: QwenVLConfig, state: dict, dtype, display=lambda name: name):
    """The model with exactly `state`'s tensors (every parameter and buffer, right shapes) in `dtype`.
    `display` names a tensor in the checkpoint's own terms for the error message."""
    import torch

    from vlcurate.model.qwenvl import QwenVL

    with torch.device("meta"):  # no init work, no memory: every tensor comes from `state`
        model = QwenVL(config)
    expected = model.state_dict()
    wrong = sorted(
        k for k in expected.keys() & state.keys() if tuple(state[k].shape) != tuple(expected[k].shape)
    )
    problems = [
        f"{display(k)} is {tuple(state[k].shape)}, the config needs {tuple(expected[k].shape)}"
        for k in wrong[:3]
    ]
    for label, names in (("missing", set(expected) - set(state)), ("unexpected", set(state) - set(expected))):
        if names:
            shown = sorted(display(k) for k in names)
            problems.append(
                f"{label} {', '.join(shown[:3])}" + (f" (+{len(shown) - 3} more)" if len(shown) > 3 else "")
            )
    if problems:
        raise QwenVLModelError(f"{spec}: weights do not fit the config: {'; '.join(problems)}. {_OPTIONS}")
    # One cast per tensor, straight to the compute dtype (a 9.6B checkpoint never exists in fp32).
    model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=True, assign=True)
    return model


# --- Qwen-VL checkpoints --------------------------------------------------------------------------------


def _checkpoint_files(spec: str, folder: str) -> list[str]:
    """The weight files of a Hugging Face checkpoint: an index's shards, else the single file."""
    for index, single in (
        ("model.safetensors.index.json", "model.safetensors"),
        ("pytorch_model.bin.index.json", "pytorch_model.bin"),
    ):
        index_path = os.path.join(folder, index)
        if os.path.isfile(index_path):
            try:
                with open(index_path, encoding="utf-8") as fh:
                    shards = sorted(set(json.load(fh)["weight_map"].values()))
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                raise QwenVLModelError(f"{spec}: unreadable {index_path} ({exc}). {_OPTIONS}") from None
            paths = [os.path.join(folder, s) for s in shards]
            absent = [s for s, p in zip(shards, paths) if not os.path.isfile(p)]
            if absent:
                raise QwenVLModelError(
                    f"{spec}: shard(s) {', '.join(absent)} named by {index} are missing. {_OPTIONS}"
                )
            return paths
        if os.path.isfile(os.path.join(folder, single)):
            return [os.path.join(folder, single)]
    raise QwenVLModelError(
        f"{spec}: {folder} has no weights (model.safetensors[.index.json] or pytorch_model.bin). {_OPTIONS}"
    )


def qwen_vl_config(spec: str, folder: str, state: dict) -> QwenVLConfig:
    """Our config from a Qwen-VL config.json (+ the stored position table's size, which it does not say)."""
    path = os.path.join(folder, CONFIG_FILE)
    try:
        with open(path, encoding="utf-8") as fh:
            hf = json.load(fh)
        visual = hf["visual"]
        hidden, heads = int(hf["hidden_size"]), int(hf["num_attention_heads"])
        checks = {
            "kv_channels * num_attention_heads == hidden_size": int(hf.get("kv_channels", hidden // heads))
            * heads
            == hidden,
            "rotary_pct == 1.0": float(hf.get("rotary_pct", 1.0)) == 1.0,
            "no_bias == true": bool(hf.get("no_bias", True)),
            "visual.output_dim == hidden_size": int(visual["output_dim"]) == hidden,
            f"visual.image_start_id == {IMG_START_ID}": int(visual.get("image_start_id", IMG_START_ID))
            == IMG_START_ID,
        }
        failed = [name for name, ok in checks.items() if not ok]
        if failed:
            raise QwenVLModelError(
                f"{spec}: {path} is not a Qwen-VL (v1) config: needs {', '.join(failed)}. {_OPTIONS}"
            )
        table = state.get("transformer.visual.positional_embedding")
        if table is None:
            raise QwenVLModelError(
                f"{spec}: no transformer.visual.positional_embedding in the weights. {_OPTIONS}"
            )
        vision = VisionConfig(
            image_size=int(visual["image_size"]),
            patch_size=int(visual["patch_size"]),
            width=int(visual["width"]),
            layers=int(visual["layers"]),
            heads=int(visual["heads"]),
            mlp_ratio=float(visual["mlp_ratio"]),
            pos_grid=math.isqrt(table.shape[0]),
        )
        decoder = DecoderConfig(
            vocab_size=int(hf["vocab_size"]),
            hidden_size=hidden,
            layers=int(hf["num_hidden_layers"]),
            heads=heads,
            intermediate_size=int(hf["intermediate_size"]),
            rms_norm_eps=float(hf.get("layer_norm_epsilon", 1e-6)),
            rotary_base=float(hf.get("rotary_emb_base", 10000)),
            tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
        )
        # visual.py builds its Resampler with output_dim // 128 heads.
        return QwenVLConfig(vision, AdapterConfig(heads=max(1, hidden // 128)), decoder)
    except QwenVLModelError:
        raise
    except ConfigError as exc:
        raise QwenVLModelError(f"{spec}: {path}: {exc}. {_OPTIONS}") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise QwenVLModelError(
            f"{spec}: {path} is not a Qwen-VL config.json ({type(exc).__name__}: {exc}). {_OPTIONS}"
        ) from None


def qwen_vl_name(name: str) -> str | None:
    """Our parameter name for a Qwen-VL one; None for buffers we recompute; KeyError if unknown."""
    if name.endswith(_QWEN_VL_IGNORED):
        return None
    for theirs, ours in _QWEN_VL_PREFIXES:
        if name.startswith(theirs):
            return ours + name[len(theirs) :]
    raise KeyError(name)


def qwen_vl_display_name(ours: str) -> str:
    """The Qwen-VL name of one of our tensors (the inverse of qwen_vl_name), for messages."""
    for theirs, mine in _QWEN_VL_PREFIXES:
        if mine and ours.startswith(mine):
            return theirs + ours[len(mine) :]
    return "transformer." + ours


def map_qwen_vl_state(spec: str, state: dict) -> dict:
    mapped = {}
    for name, tensor in state.items():
        try:
            ours = qwen_vl_name(name)
        except KeyError:
            raise QwenVLModelError(
                f"{spec}: unexpected tensor {name} in a Qwen-VL checkpoint. {_OPTIONS}"
            ) from None
        if ours is not None:
            mapped[ours] = tensor
    return mapped
