"""A Qwen-VL-architecture model in compact, readable code (nanoGPT style): ViT -> adapter -> Qwen decoder.

It follows Qwen-VL's remote code (`visual.py`, `modeling_qwen.py`) closely enough that a released
checkpoint loads 1:1 (model/qwenvl_weights.py maps the names):
- ViT: conv patch embedding without bias; a learned position embedding stored for `pos_grid`^2 positions
  and bicubically interpolated to the patch grid (`get_abs_pos`); ln_pre; pre-norm blocks whose fused
  `in_proj` lays q, k, v out per head ([head0: q k v, head1: q k v, ...], Qwen-VL's VisualAttention
  layout); GELU MLP; LayerNorm eps 1e-6.
- Adapter (Qwen-VL's `Resampler`): 256 learned queries, ONE cross-attention with
  nn.MultiheadAttention's parameters (`in_proj_weight` = [Wq; Wk; Wv] blocks), fixed 2-D sin-cos
  position embeddings added to the queries (16x16 grid) and to the keys (interpolated to the patch
  grid), ln_q / ln_kv, then ln_post and `x @ proj`.
- Decoder (Qwen-7B): RMSNorm, fused `c_attn` ([q; k; v] blocks, bias) + `c_proj` (no bias), rotary
  embedding on the whole head (rotate_half, non-interleaved, base 10000), SwiGLU `c_proj(w1(x) *
  silu(w2(x)))`, ln_f, lm_head (or the tied embedding). Qwen's logn attention scaling and dynamic NTK
  only act beyond its 2048-token training length and in generation; they are left out.
- Images: for every `<img>` in input_ids, the IMAGE_SLOTS positions after it (up to `</img>`) take the
  adapter outputs of that image, as QWenModel writes `hidden_states[i][a + 1 : b] = images[idx]`.
  Images come in the order their `<img>` tokens appear in the batch, row-major.

Precision: fp32 on CPU. On CUDA, model/qwenvl_weights.py casts the weights to bf16 (as Qwen-VL runs);
rotary tables, norms' statistics and the loss are computed in fp32 whatever the weights' dtype.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from vlcurate.model.qwen_tokenizer import IGNORE_INDEX, IMAGE_SLOTS, IMG_END_ID, IMG_START_ID
from vlcurate.model.qwenvl_config import QwenVLConfig

LN_EPS = 1e-6  # Qwen-VL's visual norm_layer
LOGIT_ROWS = 1024  # supervised positions whose logits are computed at once (bounds memory)


# --- position helpers ------------------------------------------------------------------------------------


def interpolate_grid(pos: torch.Tensor, grid: int) -> torch.Tensor:
    """[src*src, C] position table -> [grid*grid, C], bicubic (align_corners=False) in fp32, as get_abs_pos."""
    src = math.isqrt(pos.shape[0])
    if src == grid:
        return pos
    table = pos.float().reshape(1, src, src, -1).permute(0, 3, 1, 2)  # [1, C, src, src]
    table = F.interpolate(table, size=(grid, grid), mode="bicubic", align_corners=False)
    return table.permute(0, 2, 3, 1).flatten(0, 2).to(pos.dtype)  # [grid*grid, C]


def sincos_2d(dim: int, grid: int) -> torch.Tensor:
    """[grid*grid, dim] fixed 2-D sin-cos table (MAE's, as Qwen-VL's Resampler uses it): the first half of
    the channels encodes the column, the second half the row; each half is [sin | cos] of pos * omega."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))  # [dim/4]
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")  # row-major cells

    def encode(positions: torch.Tensor) -> torch.Tensor:
        angles = positions.reshape(-1, 1).double() * omega  # [grid*grid, dim/4]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([encode(cols), encode(rows)], dim=1).float()  # [grid*grid, dim]


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def rotary_tables(length: int, head_dim: int, base: float, device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [length, head_dim] in fp32 (Qwen's RotaryEmbedding: freqs repeated over both halves)."""
    inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)
    freqs = torch.outer(torch.arange(length, device=device, dtype=torch.float32), inv_freq)
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos(), emb.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, heads, T, hd]; rotation in fp32, result in x's dtype (as Qwen's apply_rotary_pos_emb)."""
    xf = x.float()
    return (xf * cos + rotate_half(xf) * sin).to(x.dtype)


# --- attention -------------------------------------------------------------------------------------------

# Every SDPA kernel but cuDNN's: on an H100 (torch 2.11, cuDNN 9.19) cuDNN builds a graph for every new
# shape, ~85 ms each, and the checker's batches differ in size: over half of its time (bench/README.md).
_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False) -> torch.Tensor:
    """softmax(q k^T / sqrt(hd)) v over [n, heads, L, hd] tensors (scaled_dot_product_attention)."""
    if not q.is_cuda:
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    with sdpa_kernel(_BACKENDS):
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)


# --- vision ----------------------------------------------------------------------------------------------


class VitAttention(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj = nn.Linear(width, 3 * width)  # per head [q | k | v] (Qwen-VL's layout)
        self.out_proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, width = x.shape
        qkv = self.in_proj(x).view(n, length, self.heads, 3 * (width // self.heads))
        q, k, v = qkv.transpose(1, 2).chunk(3, dim=-1)  # each [n, heads, L, hd]
        y = attention(q, k, v)
        return self.out_proj(y.transpose(1, 2).reshape(n, length, width))


class VitBlock(nn.Module):
    def __init__(self, width: int, heads: int, mlp_width: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width, eps=LN_EPS)
        self.attn = VitAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width, eps=LN_EPS)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(width, mlp_width))
        self.mlp.add_module("gelu", nn.GELU())
        self.mlp.add_module("c_proj", nn.Linear(mlp_width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class CrossAttention(nn.Module):
    """nn.MultiheadAttention's parameters and math (q, k, v from three blocks of in_proj_weight)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3)
        n, dim = key.shape[0], key.shape[2]  # key: [n, L, dim]

        def heads(x: torch.Tensor) -> torch.Tensor:  # [n, L, dim] -> [n, heads, L, hd]
            return x.view(x.shape[0], x.shape[1], self.heads, dim // self.heads).transpose(1, 2)

        q = heads(F.linear(query, w_q, b_q))  # [n, heads, Q, hd]
        y = attention(q, heads(F.linear(key, w_k, b_k)), heads(F.linear(value, w_v, b_v)))
        return self.out_proj(y.transpose(1, 2).reshape(n, query.shape[1], dim))


class Adapter(nn.Module):
    """Qwen-VL's Resampler: [n, patches, width] -> [n, queries, dim]."""

    def __init__(self, width: int, dim: int, queries: int, heads: int) -> None:
        super().__init__()
        self.grid = math.isqrt(queries)
        self.register_buffer("pos_embed", sincos_2d(dim, self.grid))  # fixed, saved with the weights
        self.query = nn.Parameter(torch.randn(queries, dim) * 0.02)
        self.kv_proj = nn.Linear(width, dim, bias=False) if width != dim else nn.Identity()
        self.attn = CrossAttention(dim, heads)
        self.ln_q = nn.LayerNorm(dim, eps=LN_EPS)
        self.ln_kv = nn.LayerNorm(dim, eps=LN_EPS)
        # Fresh training only (loaded weights overwrite it): q and k projections start as one shared
        # orthogonal matrix x 2, so the scores start dominated by the sin-cos terms and each query looks
        # at the patches around its grid cell. From xavier, the scores are small, every query starts
        # with the same average of all patches, and a short training never makes the image matter.
        shared = nn.init.orthogonal_(torch.empty(dim, dim)) * 2.0
        with torch.no_grad():
            self.attn.in_proj_weight[: 2 * dim] = torch.cat([shared, shared])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        key_pos = interpolate_grid(self.pos_embed, math.isqrt(x.shape[1]))  # [patches, dim]
        x = self.ln_kv(self.kv_proj(x))  # [n, patches, dim]
        q = self.ln_q(self.query) + self.pos_embed  # [queries, dim]
        q = q.unsqueeze(0).expand(x.shape[0], -1, -1)
        return self.attn(q, x + key_pos, x)  # [n, queries, dim]


class VisionEncoder(nn.Module):
    """[n, 3, S, S] normalized pixels -> [n, IMAGE_SLOTS, hidden] features for the decoder."""

    def __init__(self, config: QwenVLConfig) -> None:
        super().__init__()
        v, dim = config.vision, config.decoder.hidden_size
        self.grid = v.grid
        self.conv1 = nn.Conv2d(3, v.width, kernel_size=v.patch_size, stride=v.patch_size, bias=False)
        self.positional_embedding = nn.Parameter(torch.randn(v.pos_grid**2, v.width) * v.width**-0.5)
        self.ln_pre = nn.LayerNorm(v.width, eps=LN_EPS)
        self.blocks = nn.ModuleList(VitBlock(v.width, v.heads, v.mlp_width) for _ in range(v.layers))
        self.adapter = Adapter(v.width, dim, config.adapter.queries, config.adapter.heads)
        self.ln_post = nn.LayerNorm(dim, eps=LN_EPS)
        self.proj = nn.Parameter(torch.randn(dim, dim) * dim**-0.5)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.conv1(pixels.to(self.conv1.weight.dtype))  # [n, width, grid, grid]
        x = x.flatten(2).transpose(1, 2)  # [n, grid*grid, width], patches row-major
        x = self.ln_pre(x + interpolate_grid(self.positional_embedding, self.grid))
        for block in self.blocks:
            x = block(x)
        return self.ln_post(self.adapter(x)) @ self.proj  # [n, queries, dim]


# --- decoder ---------------------------------------------------------------------------------------------


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()  # statistics in fp32, as Qwen's RMSNorm
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight


class DecoderAttention(nn.Module):
    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.c_attn = nn.Linear(hidden, 3 * hidden)  # [q; k; v] blocks
        self.c_proj = nn.Linear(hidden, hidden, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, t, hidden = x.shape
        q, k, v = (
            y.view(b, t, self.heads, hidden // self.heads).transpose(1, 2)
            for y in self.c_attn(x).chunk(3, -1)
        )  # each [B, heads, T, hd]
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        y = attention(q, k, v, causal=True)
        return self.c_proj(y.transpose(1, 2).reshape(b, t, hidden))


class SwiGLU(nn.Module):
    def __init__(self, hidden: int, intermediate_size: int) -> None:
        super().__init__()
        width = intermediate_size // 2
        self.w1 = nn.Linear(hidden, width, bias=False)
        self.w2 = nn.Linear(hidden, width, bias=False)
        self.c_proj = nn.Linear(width, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.w1(x) * F.silu(self.w2(x)))


class DecoderBlock(nn.Module):
    def __init__(self, hidden: int, heads: int, intermediate_size: int, eps: float) -> None:
        super().__init__()
        self.ln_1 = RMSNorm(hidden, eps)
        self.attn = DecoderAttention(hidden, heads)
        self.ln_2 = RMSNorm(hidden, eps)
        self.mlp = SwiGLU(hidden, intermediate_size)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cos, sin)
        return x + self.mlp(self.ln_2(x))


# --- the model -------------------------------------------------------------------------------------------


class QwenVL(nn.Module):
    def __init__(self, config: QwenVLConfig) -> None:
        super().__init__()
        d = config.decoder
        self.config = config
        self.visual = VisionEncoder(config)
        self.wte = nn.Embedding(d.vocab_size, d.hidden_size)
        self.h = nn.ModuleList(
            DecoderBlock(d.hidden_size, d.heads, d.intermediate_size, d.rms_norm_eps) for _ in range(d.layers)
        )
        self.ln_f = RMSNorm(d.hidden_size, d.rms_norm_eps)
        self.lm_head = None if d.tie_word_embeddings else nn.Linear(d.hidden_size, d.vocab_size, bias=False)
        # Linear layers and embeddings: N(0, 0.02) (GPT-2, and Qwen-VL's Resampler for its Linears). Kept
        # as made: norms, position tables, `proj` and the adapter's in_proj_weight (see Adapter).
        keep = ("positional_embedding", "visual.proj", "in_proj_weight")
        for name, p in self.named_parameters():
            if p.dim() == 2 and not name.endswith(keep):
                nn.init.normal_(p, std=0.02)

    @property
    def output_weight(self) -> torch.Tensor:
        """[vocab, hidden]: lm_head, or the token embedding when tied."""
        return self.wte.weight if self.lm_head is None else self.lm_head.weight

    def embed(
        self, input_ids: torch.Tensor, pixels: torch.Tensor | None, features: torch.Tensor | None = None
    ) -> torch.Tensor:
        """[B, T] ids (+ images) -> [B, T, hidden] decoder inputs with the image features in their slots.
        `features` ([n_images, IMAGE_SLOTS, hidden], from self.visual) replaces `pixels` when an image's
        features are reused (the trainer shows one image to several samples)."""
        x = self.wte(input_ids)  # [B, T, hidden]
        rows, starts = torch.nonzero(input_ids == IMG_START_ID, as_tuple=True)  # row-major order
        images = features if features is not None else pixels
        given = 0 if images is None else images.shape[0]
        if given != len(rows):
            raise ValueError(f"input_ids hold {len(rows)} <img> spans but {given} images were given")
        if len(rows) == 0:
            return x
        ends = starts + IMAGE_SLOTS + 1
        length = input_ids.shape[1]
        if (ends >= length).any() or (input_ids[rows, ends.clamp(max=length - 1)] != IMG_END_ID).any():
            raise ValueError(f"every <img> must be followed by {IMAGE_SLOTS} slots and </img>")
        if features is None:
            features = self.visual(pixels.to(x.device))  # [n_images, IMAGE_SLOTS, hidden]
        slots = starts.unsqueeze(1) + 1 + torch.arange(IMAGE_SLOTS, device=x.device)  # [n_images, SLOTS]
        x = x.clone()
        x[rows.unsqueeze(1), slots] = features.to(x.dtype)
        return x

    def hidden_states(
        self,
        input_ids: torch.Tensor,
        pixels: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """[B, T, hidden] after ln_f."""
        x = self.embed(input_ids, pixels, features)
        d = self.config.decoder
        cos, sin = rotary_tables(x.shape[1], d.hidden_size // d.heads, d.rotary_base, x.device)
        for block in self.h:
            x = block(x, cos, sin)
        return self.ln_f(x)

    def forward(self, input_ids: torch.Tensor, pixels: torch.Tensor | None = None) -> torch.Tensor:
        """[B, T, vocab] logits (for tests and reference; the checker uses sample_losses)."""
        return self.hidden_states(input_ids, pixels) @ self.output_weight.T

    def use_vocab_rows(self, ids: torch.Tensor | None) -> None:
        """Declares that only the output rows `ids` can be non-zero (None: any row can). Every other logit
        is then exactly 0, so the loss's log-sum-exp needs only these rows plus log(count of the zero
        rows): the same cross-entropy, without a [positions, 151936] product. load_model calls this for
        weights stored as their used rows (save_local_dir; the bundled model uses a few hundred ids)."""
        self.vocab_rows = None if ids is None else ids.to(self.output_weight.device)

    vocab_rows: torch.Tensor | None = None

    def _token_nll(self, picked: torch.Tensor, wanted: torch.Tensor) -> torch.Tensor:
        """[S] fp32 cross-entropy of hidden states [S, hidden] against target ids [S]."""
        weight = self.output_weight
        if self.vocab_rows is None:
            return F.cross_entropy((picked @ weight.T).float(), wanted, reduction="none")  # [S, vocab]
        logits = (picked @ weight[self.vocab_rows].T).float()  # [S, used]
        zero_rows = weight.shape[0] - self.vocab_rows.shape[0]
        norm = torch.logsumexp(logits, -1)
        if zero_rows:
            norm = torch.logaddexp(norm, torch.tensor(math.log(zero_rows), device=norm.device))
        target = (picked.float() * weight[wanted].float()).sum(-1)  # its logit; 0 for a zero row
        return norm - target

    def token_losses(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor,
        pixels: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(rows, cols, nll), each [S]: the fp32 next-token cross-entropy at every supervised position,
        logits[row, col] against labels[row, col + 1] != -100. Logits are computed at those positions only
        (the full [B, T, 151936] tensor would cost more than the rest of the model), LOGIT_ROWS at a time
        (each chunk's fp32 logits take LOGIT_ROWS x 0.6 MB). `features` as in `embed`."""
        h = self.hidden_states(input_ids, pixels, features)[:, :-1]  # [B, T-1, hidden]
        targets = labels[:, 1:]
        rows, cols = torch.nonzero(targets != IGNORE_INDEX, as_tuple=True)
        picked, wanted = h[rows, cols], targets[rows, cols]  # [S, hidden], [S]
        nll = torch.cat(
            [
                self._token_nll(picked[i : i + LOGIT_ROWS], wanted[i : i + LOGIT_ROWS])
                for i in range(0, picked.shape[0], LOGIT_ROWS)
            ]
            or [h.new_zeros(0, dtype=torch.float32)]
        )  # [S]
        return rows, cols, nll

    def sample_losses(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor,
        pixels: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """[B] fp32: each row's mean next-token cross-entropy over its supervised positions (token_losses),
        NaN for a row without any."""
        rows, _, nll = self.token_losses(input_ids, labels, pixels, features)
        return row_means(rows, nll, input_ids.shape[0])


def row_means(rows: torch.Tensor, values: torch.Tensor, n: int) -> torch.Tensor:
    """[n]: the mean of `values` per row index in `rows` (both [S]); 0 / 0 = NaN for a row with none."""
    total = torch.zeros(n, device=values.device).index_add_(0, rows, values)
    return total / torch.zeros(n, device=values.device).index_add_(0, rows, torch.ones_like(values))
