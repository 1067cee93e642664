"""The building blocks of the Wan2.1 transformer, named exactly as diffusers names them.

Each module here mirrors one diffusers 0.42 module (`FP32LayerNorm`, `TimestepEmbedding`,
`PixArtAlphaTextProjection`, `WanAttention`, `FeedForward("gelu-approximate")`,
`WanTransformerBlock`) parameter for parameter, so the state dict of `WanTransformer3DModel`
fits. What differs is the forward: modulation is per latent frame (a noise level per frame, as
Self-Forcing trains), and self-attention takes its past keys/values from outside (the KV cache)
and can hand its own over to be cached. Keys handed around are already rotated by RoPE.
Module and dtype handling (float32 norms and modulation) follow diffusers; the timestep sinusoid
follows Wan (float64, as the published weights were trained).
"""

from __future__ import annotations

from collections.abc import Callable

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
        """(b, tokens, dim) -> (b, heads, tokens, head_dim)."""
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def project_kv(
        self, context: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None
    ) -> KeyValue:
        key = self.split_heads(self.norm_k(self.to_k(context)))
        if rope is not None:
            key = apply_rope(key, *rope)
        return KeyValue(key, self.split_heads(self.to_v(context)))

    def query(
        self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None
    ) -> torch.Tensor:
        query = self.split_heads(self.norm_q(self.to_q(x)))
        return apply_rope(query, *rope) if rope is not None else query

    def attend(
        self, query: torch.Tensor, kv: KeyValue, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        out = F.scaled_dot_product_attention(query, kv.key, kv.value, attn_mask=mask)
        return self.to_out[0](out.transpose(1, 2).flatten(2).type_as(query))


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
        rope: tuple[torch.Tensor, torch.Tensor],
        cross_kv: KeyValue,
        *,
        past: KeyValue | None = None,
        mask: torch.Tensor | None = None,
        stage: Callable[[KeyValue], None] | None = None,
    ) -> torch.Tensor:
        """x (b, f * t, dim); modulation (b, f, 6, dim).

        `past`: cached keys/values (already RoPE'd) this block's frames may see; `mask`: a token
        mask for a cache-less masked pass; `stage`: receives this block's own keys/values when
        they are to be written to the cache.
        """
        frames = modulation.shape[1]
        table = self.scale_shift_table.unsqueeze(1) + modulation.float()
        shift, scale, gate, c_shift, c_scale, c_gate = table.chunk(6, dim=2)

        # 1. Self-attention over the cached frames it may see, then its own block.
        h = per_frame(self.norm1(x.float()), frames) * (1 + scale) + shift
        h = h.flatten(1, 2).type_as(x)
        query = self.attn1.query(h, rope)
        self_kv = self.attn1.project_kv(h, rope)
        if stage is not None:
            stage(self_kv)
        if past is not None:
            self_kv = KeyValue(
                torch.cat([past.key, self_kv.key], 2), torch.cat([past.value, self_kv.value], 2)
            )
        attn = self.attn1.attend(query, self_kv, mask)
        x = (per_frame(x.float(), frames) + per_frame(attn, frames) * gate).flatten(1, 2).type_as(x)

        # 2. Cross-attention to the prompt.
        h = self.norm2(x.float()).type_as(x)
        x = x + self.attn2.attend(self.attn2.query(h, None), cross_kv)

        # 3. Feed-forward.
        h = (per_frame(self.norm3(x.float()), frames) * (1 + c_scale) + c_shift).flatten(1, 2)
        ff = self.ffn(h.type_as(x))
        return (
            (per_frame(x.float(), frames) + per_frame(ff.float(), frames) * c_gate)
            .flatten(1, 2)
            .type_as(x)
        )


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs (x[2i], x[2i+1]) of (b, heads, tokens, d) by (tokens, d/2) angles."""
    pairs = x.float().unflatten(-1, (-1, 2))
    x1, x2 = pairs[..., 0], pairs[..., 1]
    rotated = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return rotated.flatten(-2).type_as(x)
