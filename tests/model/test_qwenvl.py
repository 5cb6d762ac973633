"""The compact Qwen-VL model: each block against a reference written here with plain tensor ops, image
placement, per-sample losses, preprocessing and the config file."""

import io
import json
import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from vlcurate.model.qwen_tokenizer import ENDOFTEXT_ID, IGNORE_INDEX, IMG_END_ID, IMG_PAD_ID, IMG_START_ID
from vlcurate.model.qwenvl import QwenVL
from vlcurate.model.qwenvl_config import QwenVLConfig
from vlcurate.model.qwenvl_images import MEAN, STD, image_tensor
from vlcurate.schemas.errors import ConfigError

# Small but every path exercised: 8x8 patches (position table stored for 4x4, adapter keys' sin-cos
# interpolated from the 16x16 query grid), a kv projection (width 24 -> hidden 32), untied lm_head.
TINY = {
    "vision": {"image_size": 112, "patch_size": 14, "width": 24, "layers": 2, "heads": 2, "pos_grid": 4},
    "adapter": {"heads": 4},
    "decoder": {
        "hidden_size": 32,
        "layers": 2,
        "heads": 4,
        "intermediate_size": 48,
        "tie_word_embeddings": False,
    },
}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = QwenVL(QwenVLConfig.from_dict(TINY)).double().eval()
    with torch.no_grad():  # norms away from their identity init, so the reference must apply them
        for p in m.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.3)
    return m


def layer_norm(x, w, b, eps=1e-6):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * w + b


def softmax_attention(q, k, v, causal=False):
    """q [H, Q, d], k/v [H, K, d] -> [H, Q, d]."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if causal:
        scores = scores.masked_fill(torch.ones_like(scores, dtype=torch.bool).triu(1), float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def gelu(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def sincos_reference(dim, grid):
    """MAE's get_2d_sincos_pos_embed as Qwen-VL uses it: meshgrid(w, h), the first half from grid[0]."""
    gw, gh = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64))

    def one(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2) / (d / 2))
        out = np.outer(pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    return torch.from_numpy(np.concatenate([one(dim // 2, gw), one(dim // 2, gh)], axis=1))


def test_vit_block_matches_a_reference(model):
    block = model.visual.blocks[0]
    x = torch.randn(2, 64, 24, dtype=torch.float64)
    heads, hd = 2, 12
    expected = []
    for one in x:
        h = layer_norm(one, block.ln_1.weight, block.ln_1.bias)
        qkv = h @ block.attn.in_proj.weight.T + block.attn.in_proj.bias  # per head [q | k | v]
        per_head = qkv.view(64, heads, 3 * hd).permute(1, 0, 2)
        q, k, v = per_head[..., :hd], per_head[..., hd : 2 * hd], per_head[..., 2 * hd :]
        att = softmax_attention(q, k, v).permute(1, 0, 2).reshape(64, 24)
        one = one + att @ block.attn.out_proj.weight.T + block.attn.out_proj.bias
        h = layer_norm(one, block.ln_2.weight, block.ln_2.bias)
        mlp = block.mlp
        h = gelu(h @ mlp.c_fc.weight.T + mlp.c_fc.bias) @ mlp.c_proj.weight.T + mlp.c_proj.bias
        expected.append(one + h)
    with torch.no_grad():
        assert torch.allclose(block(x), torch.stack(expected), atol=1e-5, rtol=0)


def test_adapter_matches_a_reference_with_torch_multihead_attention(model):
    adapter = model.visual.adapter
    assert torch.allclose(adapter.pos_embed.double(), sincos_reference(32, 16), atol=1e-6)
    x = torch.randn(3, 64, 24, dtype=torch.float64)  # 8x8 patches
    # Keys' sin-cos: the 16x16 table bicubically resized to the 8x8 patch grid.
    table = sincos_reference(32, 16).reshape(1, 16, 16, 32).permute(0, 3, 1, 2)
    key_pos = F.interpolate(table, size=(8, 8), mode="bicubic", align_corners=False)
    key_pos = key_pos.permute(0, 2, 3, 1).reshape(64, 32)
    mha = torch.nn.MultiheadAttention(32, 4).double()  # what Qwen-VL's Resampler calls
    with torch.no_grad():
        mha.in_proj_weight.copy_(adapter.attn.in_proj_weight)
        mha.in_proj_bias.copy_(adapter.attn.in_proj_bias)
        mha.out_proj.weight.copy_(adapter.attn.out_proj.weight)
        mha.out_proj.bias.copy_(adapter.attn.out_proj.bias)
        kv = layer_norm(x @ adapter.kv_proj.weight.T, adapter.ln_kv.weight, adapter.ln_kv.bias)
        q = layer_norm(adapter.query, adapter.ln_q.weight, adapter.ln_q.bias) + sincos_reference(32, 16)
        q = q.unsqueeze(1).repeat(1, 3, 1)  # [queries, n, dim], sequence first
        expected = mha(q, (kv + key_pos).transpose(0, 1), kv.transpose(0, 1))[0].transpose(0, 1)
        got = adapter(x)
        assert got.shape == (3, 256, 32)
        assert torch.allclose(got, expected, atol=1e-5, rtol=0)
        # ...and the encoder's tail: ln_post then x @ proj.
        v = model.visual
        pixels = torch.randn(1, 3, 112, 112, dtype=torch.float64)
        patches = F.conv2d(pixels, v.conv1.weight, stride=14).flatten(2).transpose(1, 2)
        pos = F.interpolate(
            v.positional_embedding.reshape(1, 4, 4, 24).permute(0, 3, 1, 2), (8, 8), mode="bicubic"
        )
        h = layer_norm(patches + pos.permute(0, 2, 3, 1).reshape(1, 64, 24), v.ln_pre.weight, v.ln_pre.bias)
        for block in v.blocks:
            h = block(h)
        tail = layer_norm(adapter(h), v.ln_post.weight, v.ln_post.bias) @ v.proj
        assert torch.allclose(v(pixels), tail, atol=1e-5, rtol=0)


def rotate_pairs(x, base=10000.0):
    """Rotary embedding written as 2-D rotations of the pairs (i, i + d/2) by position * base^(-2i/d)."""
    t, d = x.shape[-2], x.shape[-1]
    out = torch.empty_like(x)
    for pos in range(t):
        for i in range(d // 2):
            angle = pos * base ** (-2 * i / d)
            a, b = x[..., pos, i], x[..., pos, i + d // 2]
            out[..., pos, i] = a * math.cos(angle) - b * math.sin(angle)
            out[..., pos, i + d // 2] = b * math.cos(angle) + a * math.sin(angle)
    return out


def test_decoder_block_matches_a_reference(model):
    block = model.h[0]
    x = torch.randn(2, 10, 32, dtype=torch.float64)
    from vlcurate.model.qwenvl import rotary_tables

    def rms(h, w):
        return h / torch.sqrt((h**2).mean(-1, keepdim=True) + 1e-6) * w

    expected = []
    for one in x:
        h = rms(one, block.ln_1.weight)
        qkv = h @ block.attn.c_attn.weight.T + block.attn.c_attn.bias
        q, k, v = (y.view(10, 4, 8).transpose(0, 1) for y in qkv.split(32, dim=-1))  # [q; k; v] blocks
        att = softmax_attention(rotate_pairs(q), rotate_pairs(k), v, causal=True)
        one = one + att.transpose(0, 1).reshape(10, 32) @ block.attn.c_proj.weight.T
        h = rms(one, block.ln_2.weight)
        m = block.mlp
        one = one + ((h @ m.w1.weight.T) * F.silu(h @ m.w2.weight.T)) @ m.c_proj.weight.T
        expected.append(one)
    cos, sin = rotary_tables(10, 8, 10000.0, "cpu")
    with torch.no_grad():
        got = block(x, cos.double(), sin.double())
    # The rotary tables are fp32 (as Qwen's), so the match is to fp32 precision.
    assert torch.allclose(got, torch.stack(expected), atol=1e-5, rtol=0)


def span(path=b"a.jpg"):
    return [IMG_START_ID, *path, *[IMG_PAD_ID] * (256 - len(path)), IMG_END_ID]


def test_adapter_outputs_land_exactly_on_the_slots_after_each_img(model):
    row0 = [11, 12, *span(b"x.png"), 13, *span(b"y.png"), 14]
    row1 = [21, *span(b"z.png"), 22, 23] + [ENDOFTEXT_ID] * (len(row0) - 261)
    ids = torch.tensor([row0, row1])
    pixels = torch.randn(3, 3, 112, 112, dtype=torch.float64)
    with torch.no_grad():
        x = model.embed(ids, pixels)
        plain = model.wte(ids)
        features = model.visual(pixels)
    starts = [(0, 2), (0, 2 + 258 + 1), (1, 1)]  # row-major: row 0's images first
    is_slot = torch.zeros(ids.shape, dtype=torch.bool)
    for image, (row, start) in enumerate(starts):
        assert ids[row, start] == IMG_START_ID and ids[row, start + 257] == IMG_END_ID
        assert torch.equal(x[row, start + 1 : start + 257], features[image])
        is_slot[row, start + 1 : start + 257] = True
    assert torch.equal(x[~is_slot], plain[~is_slot])  # <img>, </img>, text and padding untouched
    assert is_slot.sum() == 3 * 256


def test_image_count_and_span_shape_are_checked(model):
    ids = torch.tensor([[1, *span(), 2]])
    with pytest.raises(ValueError, match="1 <img> spans but 0 images"):
        model.embed(ids, None)
    with pytest.raises(ValueError, match="1 <img> spans but 2 images"):
        model.embed(ids, torch.zeros(2, 3, 112, 112, dtype=torch.float64))
    with pytest.raises(ValueError, match="followed by 256 slots"):
        model.embed(torch.tensor([[1, *span()[:-1], 2]]), torch.zeros(1, 3, 112, 112, dtype=torch.float64))


def rows_and_labels(rng, n_rows):
    rows, labels = [], []
    for _ in range(n_rows):
        text = [rng.randrange(300, 5000) for _ in range(rng.randint(3, 9))]
        answer = [rng.randrange(300, 5000) for _ in range(rng.randint(1, 6))]
        ids = [rng.randrange(300, 5000), *span(), *text, *answer, ENDOFTEXT_ID]
        rows.append(ids)
        labels.append([IGNORE_INDEX] * (len(ids) - len(answer) - 1) + answer + [ENDOFTEXT_ID])
    return rows, labels


def padded(rows, labels, length):
    ids = torch.tensor([r + [ENDOFTEXT_ID] * (length - len(r)) for r in rows])
    lab = torch.tensor([r + [IGNORE_INDEX] * (length - len(r)) for r in labels])
    return ids, lab


def test_sample_losses_equal_the_shifted_cross_entropy_of_the_full_logits(model):
    rows, labels = rows_and_labels(random.Random(1), 3)
    ids, lab = padded(rows, labels, max(map(len, rows)))
    pixels = torch.randn(3, 3, 112, 112, dtype=torch.float64)
    with torch.no_grad():
        got = model.sample_losses(ids, lab, pixels)
        logits = model(ids, pixels)
    for row in range(3):
        mask = lab[row, 1:] != IGNORE_INDEX
        expected = F.cross_entropy(logits[row, :-1][mask], lab[row, 1:][mask])
        assert got.dtype == torch.float32
        assert abs(got[row].item() - expected.item()) < 1e-5


def test_right_padding_does_not_change_a_rows_loss(model):
    rows, labels = rows_and_labels(random.Random(2), 4)
    pixels = torch.randn(4, 3, 112, 112, dtype=torch.float64)
    longest = max(map(len, rows))
    with torch.no_grad():
        batch = model.sample_losses(*padded(rows, labels, longest), pixels)
        more = model.sample_losses(*padded(rows, labels, longest + 37), pixels)
        alone = [
            model.sample_losses(*padded([r], [la], len(r)), pixels[i : i + 1])
            for i, (r, la) in enumerate(zip(rows, labels))
        ]
    assert torch.allclose(batch, torch.cat(alone), atol=1e-6)
    assert torch.allclose(more, batch, atol=1e-6)


def test_a_row_without_supervised_tokens_is_nan_and_eval_is_deterministic(model):
    rows, labels = rows_and_labels(random.Random(3), 2)
    labels[1] = [IGNORE_INDEX] * len(labels[1])
    ids, lab = padded(rows, labels, max(map(len, rows)))
    pixels = torch.randn(2, 3, 112, 112, dtype=torch.float64)
    with torch.no_grad():
        first, second = model.sample_losses(ids, lab, pixels), model.sample_losses(ids, lab, pixels)
    assert math.isfinite(first[0].item()) and math.isnan(first[1].item())
    assert torch.equal(first[:1], second[:1])
    text_only = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        loss = model.sample_losses(text_only, torch.tensor([[IGNORE_INDEX, 6, 7, 8]]), None)
    assert math.isfinite(loss.item())


def test_the_images_change_the_loss(model):
    rows, labels = rows_and_labels(random.Random(4), 1)
    ids, lab = padded(rows, labels, len(rows[0]))
    with torch.no_grad():
        a = model.sample_losses(ids, lab, torch.randn(1, 3, 112, 112, dtype=torch.float64))
        b = model.sample_losses(ids, lab, torch.randn(1, 3, 112, 112, dtype=torch.float64))
    assert a.item() != b.item()


# --- preprocessing --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P"])
def test_image_tensor_is_torchvisions_qwenvl_transform(mode):
    from torchvision import transforms
    from torchvision.transforms import InterpolationMode

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (120, 300, 3), dtype=np.uint8)).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    qwen = transforms.Compose(
        [
            transforms.Resize((448, 448), interpolation=InterpolationMode.BICUBIC),
            transforms.ToTensor(),
            transforms.Normalize(mean=MEAN, std=STD),
        ]
    )
    expected = qwen(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    got = image_tensor(buffer.getvalue())
    assert got.shape == (3, 448, 448)  # aspect ratio not kept
    assert torch.equal(got, expected)
    assert torch.equal(image_tensor(image), expected)


def test_undecodable_bytes_raise():
    with pytest.raises(Exception):  # noqa: B017 - PIL raises UnidentifiedImageError (an OSError)
        image_tensor(b"not an image")


# --- config ---------------------------------------------------------------------------------------------


def test_config_round_trips_through_json(tmp_path):
    config = QwenVLConfig.from_dict(TINY)
    config.to_json(str(tmp_path / "config.json"))
    assert QwenVLConfig.from_json(str(tmp_path / "config.json")) == config
    assert json.loads((tmp_path / "config.json").read_text())["vision"]["pos_grid"] == 4
    assert QwenVLConfig().decoder.vocab_size == 151936


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"vision": {"widht": 3}}, "unknown key.*widht.*valid: heads"),
        ({"decoder": {"hidden_size": "64"}}, "decoder.hidden_size must be a number"),
        ({"decoder": {"layers": 2.5}}, "must be an integer"),
        ({"vision": {"patch_size": 30}}, "not a multiple of patch_size"),
        ({"adapter": {"queries": 64}}, "queries must be 256"),
        ({"decoder": {"vocab_size": 1000}}, "must exceed 151859"),
        ({"decoder": {"heads": 3}}, "must be an even integer"),
        ({"decoder": {"tie_word_embeddings": 1}}, "true or false"),
        ({"extra": {}}, "unknown key.*extra"),
    ],
)
def test_bad_configs_name_the_field(data, message):
    with pytest.raises(ConfigError, match=message):
        QwenVLConfig.from_dict(data)


def test_a_missing_or_broken_config_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        QwenVLConfig.from_json(str(tmp_path / "nope.json"))
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ConfigError, match="not JSON"):
        QwenVLConfig.from_json(str(tmp_path / "bad.json"))
