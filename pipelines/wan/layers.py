"""The building blocks of the Wan2.1 transformer, named exactly as diffusers names them.

Each module here mirrors one diffusers 0.42 module (`FP32LayerNorm`, `TimestepEmbedding`,
`PixArtAlphaTextProjection`, `WanAttention`, `FeedForward("gelu-approximate")`,
`WanTransformerBlock`) parameter for parameter, so the state dict of `WanTransformer3DModel`
fits. What differs is the forward: modulation is per latent frame (a noise level per frame, as
Self-Forcing trains), and self-attention takes its past keys/values from outside (the KV cache)
and hands its own over to it. Keys handed around are already rotated by RoPE and shaped
(batch, tokens, heads, head_dim), the layout attention kernels read without copies.

Precision follows diffusers (float32 norms, modulation and gated residuals on bf16 weights),
except the timestep sinusoid, which follows Wan (float64, as the published weights were
trained). A block's per-token work is two tensor-only methods (`self_attention_inputs`,
`attention_outputs`) around the cache-dependent attention, so `torch.compile` can fuse them
with static shapes while the cache stays plain Python (`WanBlock.compile_regions`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from pipelines.wan.cache import KeyValue

TIMESTEP_MAX_PERIOD = 10000.0
"""Sinusoidal timestep embedding base (Wan's `sinusoidal_embedding_1d`, diffusers' `Timesteps`)."""


def timestep_sinusoid(timesteps: torch.Tensor, dim: int) -> torch.Tensor:
    """[cos, sin] of t * 10000^(-k / half) for k < half = dim / 2, in float64, as Wan does.

    Wan (and Self-Forcing, LongLive) compute this in float64; diffusers in float32, where the
    angle t * freq of a timestep near 1000 is off by ~1e-4 rad: the largest difference
    between this model and the published code before any weight is applied.
    """
    half = dim // 2
    position = timesteps.to(torch.float64)
    exponent = torch.arange(half, dtype=torch.float64, device=position.device).div(half)
    angles = position[..., None] * torch.pow(TIMESTEP_MAX_PERIOD, -exponent)
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


class Rope(NamedTuple):
    """Rotary angles of a block's tokens, each shaped (tokens, 1, head_dim / 2)."""

    cos: torch.Tensor
    sin: torch.Tensor
    polar: torch.Tensor
    """cos + i sin (complex64): eager RoPE is one complex multiply."""


class FP32LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 whatever the input dtype (diffusers' `FP32LayerNorm`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.float() if self.weight is not None else None
        bias = self.bias.float() if self.bias is not None else None
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).to(x.dtype)


class TwoLinear(nn.Module):
    """linear_1 -> activation -> linear_2 (diffusers' TimestepEmbedding / text projection)."""

    def __init__(self, in_features: int, dim: int, activation: nn.Module) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(in_features, dim)
        self.act = activation
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(x)))


class ConditionEmbedder(nn.Module):
    """Timestep and prompt embeddings, named as diffusers' `WanTimeTextImageEmbedding`."""

    def __init__(self, dim: int, freq_dim: int, text_dim: int) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.time_embedder = TwoLinear(freq_dim, dim, nn.SiLU())
        self.time_proj = nn.Linear(dim, dim * 6)
        self.text_embedder = TwoLinear(text_dim, dim, nn.GELU(approximate="tanh"))

    def time(
        self, timesteps: torch.Tensor, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, frames) timesteps -> temb (b, f, dim) and the 6 modulations (b, f, 6, dim)."""
        sinusoid = timestep_sinusoid(timesteps, self.freq_dim)
        weight_dtype = self.time_embedder.linear_1.weight.dtype
        temb = self.time_embedder(sinusoid.to(weight_dtype)).to(dtype)
        modulation = self.time_proj(F.silu(temb)).unflatten(-1, (6, -1))
        return temb, modulation


class Attention(nn.Module):
    """Projections of diffusers' `WanAttention` (to_q/k/v, to_out.0, RMS norms across heads)."""

    def __init__(self, dim: int, heads: int, eps: float) -> None:
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim)
        self.to_k = nn.Linear(dim, dim)
        self.to_v = nn.Linear(dim, dim)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim), nn.Identity()])
        self.norm_q = nn.RMSNorm(dim, eps=eps, elementwise_affine=True)
        self.norm_k = nn.RMSNorm(dim, eps=eps, elementwise_affine=True)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(b, tokens, dim) -> (b, tokens, heads, head_dim), a view."""
        return x.unflatten(-1, (self.heads, -1))

    def project_kv(self, context: torch.Tensor, rope: Rope | None) -> KeyValue:
        key = self.split_heads(self.norm_k(self.to_k(context)))
        if rope is not None:
            key = apply_rope(key, rope)
        return KeyValue(key, self.split_heads(self.to_v(context)))

    def query(self, x: torch.Tensor, rope: Rope | None) -> torch.Tensor:
        query = self.split_heads(self.norm_q(self.to_q(x)))
        return apply_rope(query, rope) if rope is not None else query


def attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """SDPA over (b, tokens, heads, head_dim) inputs -> (b, tokens, heads * head_dim).

    The transposes are views: flash and cuDNN kernels read this layout directly. Which kernel
    runs is the caller's choice (`torch.nn.attention.sdpa_kernel`), not this function's.
    """
    out = F.scaled_dot_product_attention(
        query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2), attn_mask=mask
    )
    return out.transpose(1, 2).flatten(2)


AttentionKernel = Literal["auto", "cudnn", "flash", "efficient"]
"""Which SDPA kernel self- and cross-attention try first; "auto" is torch's own order."""


def attention_kernel(kernel: AttentionKernel) -> AbstractContextManager[None]:
    """A context in which SDPA tries `kernel` first, then torch's others (never an error).

    The fallbacks matter: cuDNN and flash need a GPU and half precision, so CPU and float32
    runs quietly take the next kernel that fits.
    """
    if kernel == "auto":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    first = {
        "cudnn": SDPBackend.CUDNN_ATTENTION,
        "flash": SDPBackend.FLASH_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION,
    }[kernel]
    others = [
        SDPBackend.FLASH_ATTENTION,
        SDPBackend.CUDNN_ATTENTION,
        SDPBackend.EFFICIENT_ATTENTION,
        SDPBackend.MATH,
    ]
    return sdpa_kernel([first, *(b for b in others if b != first)], set_priority=True)


class GeluProjection(nn.Module):
    """`ffn.net.0` of diffusers' FeedForward("gelu-approximate"): Linear then tanh GELU."""

    def __init__(self, dim: int, inner: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.proj(x), approximate="tanh")


class FeedForward(nn.Module):
    def __init__(self, dim: int, inner: int) -> None:
        super().__init__()
        self.net = nn.ModuleList([GeluProjection(dim, inner), nn.Identity(), nn.Linear(inner, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.net:
            x = layer(x)
        return x


def per_frame(x: torch.Tensor, frames: int) -> torch.Tensor:
    """(b, frames * tokens, dim) -> (b, frames, tokens, dim), to broadcast per-frame modulation."""
    return x.unflatten(1, (frames, -1))


def modulate(normed: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """normed * (1 + scale) + shift per frame (one fused multiply-add), flattened back."""
    frames = shift.shape[1]
    return torch.addcmul(shift, per_frame(normed, frames), 1 + scale).flatten(1, 2)


def gated_residual(x: torch.Tensor, update: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """x + update * gate per frame, computed in float32 (diffusers), returned in x's dtype."""
    frames = gate.shape[1]
    out = torch.addcmul(per_frame(x, frames), per_frame(update, frames), gate)
    return out.flatten(1, 2).to(x.dtype)


class WanBlock(nn.Module):
    """One Wan transformer block (diffusers' `WanTransformerBlock` layout), frame-modulated."""

    def __init__(
        self, dim: int, ffn_dim: int, heads: int, cross_attn_norm: bool, eps: float
    ) -> None:
        super().__init__()
        self.norm1 = FP32LayerNorm(dim, eps, elementwise_affine=False)
        self.attn1 = Attention(dim, heads, eps)
        self.attn2 = Attention(dim, heads, eps)
        self.norm2 = (
            FP32LayerNorm(dim, eps, elementwise_affine=True) if cross_attn_norm else nn.Identity()
        )
        self.ffn = FeedForward(dim, ffn_dim)
        self.norm3 = FP32LayerNorm(dim, eps, elementwise_affine=False)
        self.scale_shift_table = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)

    def forward(
        self,
        x: torch.Tensor,
        modulation: torch.Tensor,
        rope: Rope,
        cross_kv: KeyValue,
        *,
        attend_to: Callable[[KeyValue], KeyValue] | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x (b, f * t, dim); modulation (b, f, 6, dim).

        `attend_to`: receives this block's own keys/values and returns everything its queries
        attend to (the KV cache's `attend`: cached frames plus the block); None attends to the
        block alone. `mask`: a token mask for a cache-less masked pass.
        """
        table = self.scale_shift_table.unsqueeze(1) + modulation.float()
        # 1. Queries, keys and values of this block: norm, modulation, projections, RoPE.
        query, key, value = self.self_attention_inputs(x, table, rope)
        # 2. Self-attention over the cached frames it may see and its own block.
        own = KeyValue(key, value)
        seen = own if attend_to is None else attend_to(own)
        attn = attention(query, seen.key, seen.value, mask)
        # 3. Gated residual, cross-attention to the prompt, feed-forward.
        return self.attention_outputs(x, attn, table, cross_kv.key, cross_kv.value)

    def self_attention_inputs(
        self, x: torch.Tensor, table: torch.Tensor, rope: Rope
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Step 1 of `forward`: (query, key, value), each (b, tokens, heads, head_dim)."""
        shift, scale = table[:, :, 0:1], table[:, :, 1:2]
        h = modulate(self.norm1(x.float()), shift, scale).to(x.dtype)
        query = self.attn1.query(h, rope)
        own = self.attn1.project_kv(h, rope)
        return query, own.key, own.value

    def attention_outputs(
        self,
        x: torch.Tensor,
        attn: torch.Tensor,
        table: torch.Tensor,
        cross_key: torch.Tensor,
        cross_value: torch.Tensor,
    ) -> torch.Tensor:
        """Step 3 of `forward`: the block's output from x and its self-attention (b, t, dim)."""
        gate, c_shift, c_scale, c_gate = (table[:, :, i : i + 1] for i in range(2, 6))
        x = gated_residual(x, self.attn1.to_out[0](attn), gate)
        h = self.norm2(x.float()).to(x.dtype)
        x = x + self.attn2.to_out[0](attention(self.attn2.query(h, None), cross_key, cross_value))
        h = modulate(self.norm3(x.float()), c_shift, c_scale).to(x.dtype)
        return gated_residual(x, self.ffn(h), c_gate)

    def compile_regions(self, **options: object) -> None:
        """torch.compile steps 1 and 3 (fixed shapes for a given block size), not the cache.

        Every block runs the same code, so the graphs compiled for the first block serve all.
        """
        self.self_attention_inputs = torch.compile(self.self_attention_inputs, **options)  # type: ignore[method-assign]
        self.attention_outputs = torch.compile(self.attention_outputs, **options)  # type: ignore[method-assign]


def apply_rope(x: torch.Tensor, rope: Rope) -> torch.Tensor:
    """Rotate interleaved pairs (x[2i], x[2i+1]) of (b, tokens, heads, d) by the tokens' angles.

    Eagerly one complex multiply (three kernels); under torch.compile the same rotation in
    real arithmetic, which Inductor fuses into one kernel (it does not generate complex code).
    """
    pairs = x.float().unflatten(-1, (-1, 2))
    if torch.compiler.is_compiling():
        x1, x2 = pairs[..., 0], pairs[..., 1]
        rotated = torch.stack(
            [x1 * rope.cos - x2 * rope.sin, x1 * rope.sin + x2 * rope.cos], dim=-1
        )
        return rotated.flatten(-2).to(x.dtype)
    return torch.view_as_real(torch.view_as_complex(pairs) * rope.polar).flatten(-2).to(x.dtype)
