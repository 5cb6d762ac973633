"""Loading Qwen-VL-architecture models by spec: our local-dir format, a Qwen-VL checkpoint in its released
layout (written here with Qwen-VL's exact names, shapes and config.json, sharded), and bad specs."""

import json
import math
import re

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from vlcurate.model.qwen_tokenizer import IMG_END_ID, IMG_PAD_ID, IMG_START_ID
from vlcurate.model.qwenvl import QwenVL
from vlcurate.model.qwenvl_config import QwenVLConfig
from vlcurate.model.qwenvl_weights import (
    DEFAULT_MODEL,
    QwenVLModelError,
    check_spec,
    default_device,
    load_model,
    qwen_vl_name,
    save_local_dir,
)
from vlcurate.schemas.errors import ConfigError

SMALL = {
    "vision": {"image_size": 56, "patch_size": 14, "width": 16, "layers": 1, "heads": 2, "pos_grid": 2},
    "adapter": {"heads": 2},
    "decoder": {"hidden_size": 16, "layers": 1, "heads": 2, "intermediate_size": 32},
}


def ids_with_image(n_text=6):
    return torch.tensor([[5, IMG_START_ID, 97, *[IMG_PAD_ID] * 255, IMG_END_ID, *range(300, 300 + n_text)]])


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory):
    torch.manual_seed(0)
    config = QwenVLConfig.from_dict(SMALL)
    model = QwenVL(config).eval()
    path = tmp_path_factory.mktemp("local") / "small"
    save_local_dir(model, config, str(path))
    return path, model


def test_local_dir_round_trip_gives_the_fp16_rounded_model(small_dir):
    path, model = small_dir
    loaded, config = load_model(f"local-dir:{path}", device="cpu")
    assert config == QwenVLConfig.from_dict(SMALL)
    assert not loaded.training and next(loaded.parameters()).dtype == torch.float32
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor.half().float()), name
    rounded = QwenVL(config).eval()
    rounded.load_state_dict({k: v.half().float() for k, v in model.state_dict().items()})
    pixels = torch.randn(1, 3, 56, 56)
    with torch.no_grad():
        assert torch.equal(loaded(ids_with_image(), pixels), rounded(ids_with_image(), pixels))
    assert model.lm_head is None and "lm_head.weight" not in loaded.state_dict()  # tied by default


def test_a_mostly_zero_embedding_is_stored_as_its_rows_and_gives_the_same_losses(tmp_path):
    """A model trained on a small domain keeps zero rows for the ids it never saw: save_local_dir stores
    the used rows and their ids only, and the loss over the used rows (+ log of the zero rows' count)
    equals the full-vocabulary cross-entropy."""
    from safetensors.torch import load_file

    torch.manual_seed(1)
    config = QwenVLConfig.from_dict(SMALL)
    model = QwenVL(config).eval()
    used = torch.tensor([5, 97, 300, 301, 302, 303, 304, 305, IMG_START_ID, IMG_END_ID, IMG_PAD_ID])
    with torch.no_grad():
        kept = model.wte.weight[used].clone()
        model.wte.weight.zero_()
        model.wte.weight[used] = kept
    save_local_dir(model, config, str(tmp_path))
    stored = load_file(str(tmp_path / "model.safetensors"))
    assert "wte.weight" not in stored
    assert stored["wte.ids"].tolist() == sorted(used.tolist()) and stored["wte.rows"].shape == (11, 16)
    loaded, _ = load_model(f"local-dir:{tmp_path}", device="cpu")
    assert torch.equal(loaded.wte.weight, model.wte.weight.half().float())
    assert loaded.vocab_rows.tolist() == sorted(used.tolist())
    ids = ids_with_image()
    labels = ids.clone()
    labels[0, :260] = -100
    labels[0, -1] = 999  # a target outside the used rows: its logit is exactly 0
    pixels = torch.randn(1, 3, 56, 56)
    with torch.no_grad():
        fast = loaded.sample_losses(ids, labels, pixels)
        logits = loaded(ids, pixels)[0, :-1]
        slow = F.cross_entropy(logits[259:], labels[0, 260:], reduction="mean")
        loaded.use_vocab_rows(None)
        full = loaded.sample_losses(ids, labels, pixels)
    assert math.isclose(fast.item(), slow.item(), rel_tol=1e-5)
    assert math.isclose(fast.item(), full.item(), rel_tol=1e-5)


def test_a_dense_embedding_is_stored_whole(small_dir):
    from safetensors.torch import load_file

    path, _ = small_dir
    assert "wte.weight" in load_file(str(path / "model.safetensors"))
    loaded, _ = load_model(f"local-dir:{path}", device="cpu")
    assert loaded.vocab_rows is None


def test_the_default_device_is_the_cpu_without_a_gpu():
    assert default_device() == ("cuda" if torch.cuda.is_available() else "cpu")


# --- a Qwen-VL checkpoint in the released layout ---------------------------------------------------------

HIDDEN, LAYERS, HEADS, FF = 128, 2, 4, 96  # output_dim 128: visual.py's Resampler gets 128 // 128 = 1 head
VISUAL = {
    "heads": 2,
    "image_size": 56,
    "image_start_id": 151857,
    "layers": 2,
    "mlp_ratio": 2.5,
    "output_dim": HIDDEN,
    "patch_size": 14,
    "width": 24,
}


def qwen_vl_tensors():
    """Every tensor of QWenLMHeadModel + visual.VisionTransformer, named and shaped as their modules make
    them (nn.Linear(in, out).weight is [out, in]); position table stored for 16x16, as visual.py does."""
    g = torch.Generator().manual_seed(1)
    w, mlp = VISUAL["width"], int(VISUAL["width"] * VISUAL["mlp_ratio"])

    def t(*shape):
        return (torch.randn(*shape, generator=g) * 0.3).to(torch.bfloat16)

    v = "transformer.visual."
    out = {
        "transformer.wte.weight": t(151936, HIDDEN),
        "transformer.ln_f.weight": t(HIDDEN),
        "lm_head.weight": t(151936, HIDDEN),
        v + "conv1.weight": t(w, 3, 14, 14),
        v + "positional_embedding": t(256, w),
        v + "ln_pre.weight": t(w),
        v + "ln_pre.bias": t(w),
        v + "attn_pool.query": t(256, HIDDEN),
        v + "attn_pool.kv_proj.weight": t(HIDDEN, w),
        v + "attn_pool.attn.in_proj_weight": t(3 * HIDDEN, HIDDEN),
        v + "attn_pool.attn.in_proj_bias": t(3 * HIDDEN),
        v + "attn_pool.attn.out_proj.weight": t(HIDDEN, HIDDEN),
        v + "attn_pool.attn.out_proj.bias": t(HIDDEN),
        v + "attn_pool.ln_q.weight": t(HIDDEN),
        v + "attn_pool.ln_q.bias": t(HIDDEN),
        v + "attn_pool.ln_kv.weight": t(HIDDEN),
        v + "attn_pool.ln_kv.bias": t(HIDDEN),
        v + "attn_pool.pos_embed": t(256, HIDDEN),
        v + "ln_post.weight": t(HIDDEN),
        v + "ln_post.bias": t(HIDDEN),
        v + "proj": t(HIDDEN, HIDDEN),
    }
    for i in range(VISUAL["layers"]):
        b = f"{v}transformer.resblocks.{i}."
        for norm in ("ln_1", "ln_2"):
            out[b + norm + ".weight"], out[b + norm + ".bias"] = t(w), t(w)
        out[b + "attn.in_proj.weight"], out[b + "attn.in_proj.bias"] = t(3 * w, w), t(3 * w)
        out[b + "attn.out_proj.weight"], out[b + "attn.out_proj.bias"] = t(w, w), t(w)
        out[b + "mlp.c_fc.weight"], out[b + "mlp.c_fc.bias"] = t(mlp, w), t(mlp)
        out[b + "mlp.c_proj.weight"], out[b + "mlp.c_proj.bias"] = t(w, mlp), t(w)
    for i in range(LAYERS):
        b = f"transformer.h.{i}."
        out[b + "ln_1.weight"], out[b + "ln_2.weight"] = t(HIDDEN), t(HIDDEN)
        out[b + "attn.c_attn.weight"], out[b + "attn.c_attn.bias"] = t(3 * HIDDEN, HIDDEN), t(3 * HIDDEN)
        out[b + "attn.c_proj.weight"] = t(HIDDEN, HIDDEN)
        out[b + "mlp.w1.weight"], out[b + "mlp.w2.weight"] = t(FF // 2, HIDDEN), t(FF // 2, HIDDEN)
        out[b + "mlp.c_proj.weight"] = t(HIDDEN, FF // 2)
    return out


def write_qwen_vl(folder, tensors, config_overrides=None, shards=2):
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "architectures": ["QWenLMHeadModel"],
        "auto_map": {"AutoModelForCausalLM": "modeling_qwen.QWenLMHeadModel"},
        "hidden_size": HIDDEN,
        "intermediate_size": FF,
        "kv_channels": HIDDEN // HEADS,
        "layer_norm_epsilon": 1e-6,
        "model_type": "qwen",
        "no_bias": True,
        "num_attention_heads": HEADS,
        "num_hidden_layers": LAYERS,
        "rotary_emb_base": 10000,
        "rotary_pct": 1.0,
        "seq_length": 2048,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "use_dynamic_ntk": True,
        "use_logn_attn": True,
        "visual": VISUAL,
        "vocab_size": 151936,
        **(config_overrides or {}),
    }
    (folder / "config.json").write_text(json.dumps(config))
    names = sorted(tensors)
    weight_map = {}
    for k in range(shards):
        shard = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: tensors[n] for n in names[k::shards]}
        save_file(part, str(folder / shard), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, shard))
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map})
    )
    return folder


@pytest.fixture(scope="module")
def qwen_checkpoint(tmp_path_factory):
    tensors = qwen_vl_tensors()
    return write_qwen_vl(tmp_path_factory.mktemp("qwen") / "Qwen-VL-tiny", tensors), tensors


@pytest.mark.slow
def test_a_qwen_vl_checkpoint_loads_with_every_tensor_in_its_place(qwen_checkpoint, tmp_path):
    folder, tensors = qwen_checkpoint
    model, config = load_model(f"qwen-vl:{folder}", device="cpu")
    assert config.vision.pos_grid == 16 and config.vision.mlp_width == 60 and config.adapter.heads == 1
    assert config.decoder.tie_word_embeddings is False and config.decoder.hidden_size == HIDDEN
    ours = model.state_dict()
    # A few by hand: the renamed prefixes and the modules with two layouts of fused q, k, v.
    by_hand = {
        "transformer.wte.weight": model.wte.weight,
        "lm_head.weight": model.lm_head.weight,
        "transformer.h.1.attn.c_attn.bias": model.h[1].attn.c_attn.bias,
        "transformer.h.0.mlp.w2.weight": model.h[0].mlp.w2.weight,
        "transformer.visual.transformer.resblocks.1.attn.in_proj.weight": model.visual.blocks[
            1
        ].attn.in_proj.weight,
        "transformer.visual.attn_pool.attn.in_proj_weight": model.visual.adapter.attn.in_proj_weight,
        "transformer.visual.attn_pool.kv_proj.weight": model.visual.adapter.kv_proj.weight,
        "transformer.visual.attn_pool.pos_embed": model.visual.adapter.pos_embed,
        "transformer.visual.positional_embedding": model.visual.positional_embedding,
        "transformer.visual.proj": model.visual.proj,
    }
    for name, tensor in by_hand.items():
        assert torch.equal(tensor, tensors[name].float()), name
    # ...and every one: a bijection between their tensors and our state.
    assert len(ours) == len(tensors)
    for name, tensor in tensors.items():
        assert torch.equal(ours[qwen_vl_name(name)], tensor.float()), name

    # The ViT block against visual.py's VisualAttention math on the raw checkpoint tensors
    # (in_proj viewed as [L, heads, 3 * head_dim], then split into q, k, v).
    b = "transformer.visual.transformer.resblocks.0."
    raw = {k[len(b) :]: v.float() for k, v in tensors.items() if k.startswith(b)}
    x = torch.randn(1, 16, 24)
    h = F.layer_norm(x, (24,), raw["ln_1.weight"], raw["ln_1.bias"], eps=1e-6)
    mixed = (h @ raw["attn.in_proj.weight"].T + raw["attn.in_proj.bias"]).view(1, 16, 2, 36)
    q, k, v = (p.transpose(1, 2) for p in mixed.split(12, dim=-1))
    att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(12), -1) @ v
    x1 = (
        x + att.transpose(1, 2).reshape(1, 16, 24) @ raw["attn.out_proj.weight"].T + raw["attn.out_proj.bias"]
    )
    h = F.layer_norm(x1, (24,), raw["ln_2.weight"], raw["ln_2.bias"], eps=1e-6)
    h = F.gelu(h @ raw["mlp.c_fc.weight"].T + raw["mlp.c_fc.bias"]) @ raw["mlp.c_proj.weight"].T
    with torch.no_grad():
        assert torch.allclose(model.visual.blocks[0](x), x1 + h + raw["mlp.c_proj.bias"], atol=1e-4)

    # Mapped once, the model saves in our format and reloads to the same forward (bf16 values fit fp16).
    save_local_dir(model, config, str(tmp_path / "ours"))
    again, again_config = load_model(f"local-dir:{tmp_path / 'ours'}", device="cpu")
    assert again_config == config
    pixels = torch.randn(1, 3, 56, 56)
    with torch.no_grad():
        a, b2 = model(ids_with_image(), pixels), again(ids_with_image(), pixels)
    assert torch.allclose(a, b2, atol=1e-3, rtol=1e-3)


def test_qwen_vl_names_map_by_prefix():
    assert qwen_vl_name("transformer.h.3.attn.c_proj.weight") == "h.3.attn.c_proj.weight"
    assert (
        qwen_vl_name("transformer.visual.transformer.resblocks.0.mlp.c_fc.bias")
        == "visual.blocks.0.mlp.c_fc.bias"
    )
    assert qwen_vl_name("transformer.visual.attn_pool.ln_kv.weight") == "visual.adapter.ln_kv.weight"
    assert qwen_vl_name("transformer.visual.ln_post.bias") == "visual.ln_post.bias"
    assert qwen_vl_name("transformer.rotary_emb.inv_freq") is None
    with pytest.raises(KeyError):
        qwen_vl_name("model.layers.0.self_attn.q_proj.weight")  # a Qwen2-VL name


# --- bad specs ------------------------------------------------------------------------------------------


def one_line_config_error(spec, match):
    with pytest.raises(ConfigError, match=match) as info:
        load_model(spec, device="cpu")
    assert isinstance(info.value, QwenVLModelError)
    assert "\n" not in str(info.value)
    assert "pass" in str(info.value).lower()
    return str(info.value)


def test_bad_specs_say_what_to_pass(tmp_path, small_dir):
    one_line_config_error("openai/Qwen-VL", "unknown model spec")
    one_line_config_error("", "empty model spec")
    one_line_config_error("bundled:nope", "no bundled Qwen-VL model 'nope'")
    one_line_config_error(f"local-dir:{tmp_path / 'absent'}", "no folder")
    (tmp_path / "empty").mkdir()
    one_line_config_error(f"local-dir:{tmp_path / 'empty'}", "has no config.json")
    (tmp_path / "no_weights").mkdir()
    QwenVLConfig.from_dict(SMALL).to_json(str(tmp_path / "no_weights" / "config.json"))
    one_line_config_error(f"local-dir:{tmp_path / 'no_weights'}", "has no model.safetensors")
    (tmp_path / "no_weights" / "model.safetensors").write_bytes(b"garbage")
    one_line_config_error(f"local-dir:{tmp_path / 'no_weights'}", "cannot read weights")


def test_weights_of_another_size_are_refused_with_the_shapes(tmp_path, small_dir):
    path, _ = small_dir
    other = tmp_path / "other"
    other.mkdir()
    (other / "model.safetensors").write_bytes((path / "model.safetensors").read_bytes())
    bigger = json.loads(json.dumps(SMALL))
    bigger["decoder"]["vocab_size"] = 152000
    QwenVLConfig.from_dict(bigger).to_json(str(other / "config.json"))
    message = one_line_config_error(f"local-dir:{other}", "do not fit the config")
    assert re.search(r"wte.weight is \(151936, 16\), the config needs \(152000, 16\)", message)


def test_a_qwen_vl_folder_named_as_local_dir_and_broken_checkpoints(tmp_path):
    tensors = {"transformer.visual.positional_embedding": torch.zeros(256, 24)}
    folder = write_qwen_vl(tmp_path / "q", tensors, shards=1)
    one_line_config_error(f"local-dir:{folder}", "has no model.safetensors")
    save_file({"x": torch.zeros(1)}, str(folder / "model.safetensors"))
    one_line_config_error(f"local-dir:{folder}", "holds a Qwen-VL checkpoint: pass qwen-vl:")
    # The index names a shard that is not there.
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    index["weight_map"]["lm_head.weight"] = "model-00002-of-00002.safetensors"
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    one_line_config_error(f"qwen-vl:{folder}", "model-00002-of-00002.safetensors named by")
    # Missing tensors; then a config that is not Qwen-VL (v1).
    broken = write_qwen_vl(tmp_path / "r", tensors, shards=1)
    one_line_config_error(f"qwen-vl:{broken}", "missing lm_head.weight, transformer.h.0.attn.c_attn.bias")
    odd = write_qwen_vl(tmp_path / "s", tensors, {"rotary_pct": 0.5}, shards=1)
    one_line_config_error(f"qwen-vl:{odd}", "needs rotary_pct == 1.0")
    novisual = write_qwen_vl(tmp_path / "t", tensors, {"visual": None}, shards=1)
    one_line_config_error(f"qwen-vl:{novisual}", "not a Qwen-VL config.json")
    (tmp_path / "u").mkdir()
    (tmp_path / "u" / "config.json").write_text("{}")
    one_line_config_error(f"qwen-vl:{tmp_path / 'u'}", "has no weights")


def test_check_spec_refuses_early_without_reading_weights(tmp_path, small_dir):
    path, _ = small_dir
    check_spec(f"local-dir:{path}")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text('{"vision": {"widht": 3}}')
    (tmp_path / "bad" / "model.safetensors").write_bytes(b"never read")
    with pytest.raises(QwenVLModelError, match="unknown key"):
        check_spec(f"local-dir:{tmp_path / 'bad'}")
    (tmp_path / "q").mkdir()
    (tmp_path / "q" / "config.json").write_text("{}")
    with pytest.raises(QwenVLModelError, match="has no weights"):
        check_spec(f"qwen-vl:{tmp_path / 'q'}")
    with pytest.raises(QwenVLModelError, match="unknown model spec"):
        check_spec("ViT-L-14@openai")


def test_the_default_is_the_bundled_model():
    assert DEFAULT_MODEL == "bundled:compact-qwenvl"
