"""Speed-ups for open_clip towers that keep the math: fused SDPA attention and optional torch.compile.

open_clip's blocks call nn.MultiheadAttention, whose Python path does several reshapes and, under
torch.compile, breaks the graph. `SdpaSelfAttention` holds the same parameters and calls
F.scaled_dot_product_attention directly (flash kernels on Hopper in bf16), so a compiled tower is one
graph and LayerNorm/GELU/residual adds fuse around the matmuls.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vlcurate.model.int_math import ceil_div


class SdpaSelfAttention(nn.Module):
    """Drop-in for a batch-first nn.MultiheadAttention used as self-attention (q is k is v).

    The packed in-projection becomes an nn.Linear (same tensors), so fp8 conversion can reach it too."""

    def __init__(self, mha: nn.MultiheadAttention) -> None:
        super().__init__()
        if not mha.batch_first or mha.in_proj_weight is None:
            raise ValueError("only batch-first attention with a packed in-projection can be replaced")
        self.num_heads = mha.num_heads
        width = mha.embed_dim
        self.qkv = nn.Linear(width, 3 * width, bias=mha.in_proj_bias is not None)
        self.qkv.weight = mha.in_proj_weight
        if mha.in_proj_bias is not None:
            self.qkv.bias = mha.in_proj_bias
        self.out_proj = mha.out_proj
        self.batch_first = True

    def forward(self, query, key=None, value=None, need_weights=False, attn_mask=None):
        batch, length, width = query.shape  # B, L, D
        qkv = self.qkv(query).view(batch, length, 3, self.num_heads, width // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each B, H, L, D/H
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, width)), None


def use_sdpa(module: nn.Module) -> int:
    """Replaces every self-attention nn.MultiheadAttention under `module`; returns how many."""
    replaced = 0
    for parent in module.modules():
        attn = getattr(parent, "attn", None)
        if isinstance(attn, nn.MultiheadAttention) and not hasattr(parent, "ln_1_kv"):
            parent.attn = SdpaSelfAttention(attn)
            replaced += 1
    return replaced


def speed_up(
    model: nn.Module, fp8: bool = False, compile_mode: str | None = "default", fp8_scaling: str = "row"
):
    """Applies SDPA attention (always: same math), fp8 linears in the image tower (opt-in), and returns
    the image encoder to call: compiled unless `compile_mode` is None. Shapes stay static per batch size;
    callers pad batches to a few sizes (padded_size). Static fp8 layers need calibrate_fp8() before the
    first call."""
    use_sdpa(model)
    if fp8:
        use_fp8(model.visual, scaling=fp8_scaling)
    if compile_mode is None:
        return model.encode_image
    return torch.compile(
        model.encode_image, mode=None if compile_mode == "default" else compile_mode, dynamic=False
    )


def padded_size(n: int, step: int = 64) -> int:
    """Batch sizes are rounded up to a multiple of `step` so a compiled model sees few distinct shapes."""
    return max(step, ceil_div(n, step) * step)


class Fp8Linear(nn.Module):
    """nn.Linear with float8 (e4m3) weights and activations on Hopper, bf16 output, through
    torch._scaled_mm. `scaling="row"`: per-output-channel weight scales and per-token activation scales;
    `"tensor"`: one scale per weight and per activation tensor (cuBLAS's fastest fp8 path, coarser);
    `"static"`: tensor scales, the activation's fixed by calibrate_fp8() on sample inputs, so no reduction
    over the activations runs before each matmul and the cast fuses into the op that made them.
    About twice the matmul rate of bf16; scores move by a small measured amount (bench/clip_gpu.py), so it
    is opt-in (`precision: fp8`)."""

    E4M3_MAX = 448.0

    def __init__(self, linear: nn.Linear, scaling: str = "row") -> None:
        super().__init__()
        if scaling not in ("row", "tensor", "static"):
            raise ValueError(f"fp8 scaling must be row, tensor or static, not {scaling!r}")
        self.rowwise, self.static = scaling == "row", scaling == "static"
        self.calibrating = self.calibrated = False  # Python flags: no device sync in forward
        self.register_buffer("x_scale", torch.zeros((), dtype=torch.float32))  # static: set by calibration
        weight = linear.weight.detach().float()  # out x in
        amax = weight.abs().amax(dim=1, keepdim=True) if self.rowwise else weight.abs().amax()
        scale = amax.clamp(min=1e-12) / self.E4M3_MAX
        self.register_buffer("weight_fp8", (weight / scale).to(torch.float8_e4m3fn))
        self.register_buffer("weight_scale", scale.t().contiguous() if self.rowwise else scale)  # 1 x out
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().to(torch.bfloat16))
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        if self.static and not self.calibrating:
            if not self.calibrated:
                raise RuntimeError("static fp8 layers need calibrate_fp8() before use")
            x_scale = self.x_scale
            # Saturate: inputs beyond the calibrated range would otherwise become NaN in e4m3.
            x_fp8 = (flat / x_scale).clamp(-self.E4M3_MAX, self.E4M3_MAX).to(torch.float8_e4m3fn)
        else:
            amax = flat.abs().amax(dim=1, keepdim=True) if self.rowwise else flat.abs().amax()  # M x 1 or 1
            x_scale = amax.float().clamp(min=1e-12) / self.E4M3_MAX
            if self.calibrating:
                self.x_scale = torch.maximum(self.x_scale, x_scale)
            x_fp8 = (flat / x_scale).to(torch.float8_e4m3fn)
        out = torch._scaled_mm(
            x_fp8, self.weight_fp8.t(), scale_a=x_scale, scale_b=self.weight_scale, out_dtype=torch.bfloat16
        )
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*shape[:-1], self.out_features)


def use_fp8(module: nn.Module, scaling: str = "row") -> int:
    """Replaces the big nn.Linear layers (attention in/out projections' outputs and MLPs) under `module`.

    Run use_sdpa first so attention in-projections are nn.Linear too. Dimensions must be multiples of 16
    for the fp8 kernels; smaller or odd layers stay bf16."""
    replaced = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear) and child.in_features % 16 == 0 and child.out_features % 16 == 0:
                setattr(parent, name, Fp8Linear(child, scaling))
                replaced += 1
    return replaced


def calibrate_fp8(module: nn.Module, run, headroom: float = 1.0) -> int:
    """Fixes the activation scale of every static Fp8Linear under `module` to `headroom` times the largest
    seen while `run()` executes (call it eagerly, before a compiled forward, on representative inputs);
    returns how many layers were calibrated. e4m3 keeps its 3 mantissa bits over 17 binades, so headroom
    for unseen inputs costs precision only in the smallest values."""
    layers = [m for m in module.modules() if isinstance(m, Fp8Linear) and m.static]
    for layer in layers:
        layer.calibrating = True
        layer.x_scale = torch.zeros_like(layer.x_scale)
    try:
        run()
    finally:
        for layer in layers:
            layer.calibrating = False
            layer.x_scale = layer.x_scale * headroom
            layer.calibrated = bool(layer.x_scale > 0)
    return len(layers)
