"""The `tiny_ar` network: a small block-causal pixel DiT with an identity sink and a KV cache.

Same algorithm as Self-Forcing / LongLive at a size two CPU cores can run: frames are cut into
patches, a block of frames is denoised in a few steps against cached keys and values of the
character's reference frame (the sink, never evicted) and of the last `window_frames` frames,
then one more pass at noise level 0 writes the finished block into the cache. Time is a rotary
embedding of the frame index on a quarter of each head's channels: it depends only on frame
distances, so positions continue across blocks for ever without leaving the trained range. The
sink's time channels are zeroed, so the reference frame looks the same from any point of a
stream, and cached attention needs no mask at all (the fast path of scaled_dot_product_attention).

Knows tensors only: no Conditioning objects (see `features.py`), no sampling loop (see
`pipeline.py`), no training (see `train.py`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import Tensor, nn

from pipelines.tiny_ar.features import FEATURE_SIZE

SINK = -1
"""Frame index that marks the reference frame held in the sink."""

TIME_FREQUENCIES = tuple(0.6**i for i in range(8))
"""Rotary frequencies (radians per frame) of the time channels: horizons of 1 to ~40 frames."""


def _time_rotation(frame_index: Tensor) -> tuple[Tensor, Tensor]:
    """cos and sin tables (T, len(TIME_FREQUENCIES)) for per-token frame indices; zero at SINK."""
    freqs = torch.tensor(TIME_FREQUENCIES, dtype=torch.float64, device=frame_index.device)
    angles = frame_index.double()[:, None] * freqs
    live = (frame_index != SINK)[:, None]
    return (torch.cos(angles) * live).float(), (torch.sin(angles) * live).float()


def _rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate the last 2 * len(cos) channels of x (B, heads, T, head_dim) by frame index."""
    time = 2 * cos.shape[-1]
    content, x1, x2 = x[..., :-time], x[..., -time : -time // 2], x[..., -time // 2 :]
    return torch.cat([content, x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def _sinusoid(values: Tensor, size: int = 256) -> Tensor:
    """Transformer-style sinusoidal embedding of scalars (noise levels scaled to 0..1000)."""
    half = size // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=values.device) / half)
    angles = values.float()[..., None] * 1000.0 * freqs
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


@dataclass
class TinyARCache:
    """Per-layer keys and values of the sink frame and of the recent frames.

    Keys are stored already rotated to their frame's index (rotary angles only ever compare
    as differences), so evicting old frames never changes the ones that stay.
    """

    window_frames: int
    tokens_per_frame: int
    sink_k: list[Tensor] = field(default_factory=list)
    sink_v: list[Tensor] = field(default_factory=list)
    window_k: list[Tensor] = field(default_factory=list)
    window_v: list[Tensor] = field(default_factory=list)
    window_index: list[int] = field(default_factory=list)

    def layer(self, i: int) -> tuple[Tensor, Tensor]:
        return (
            torch.cat([self.sink_k[i], self.window_k[i]], dim=2),
            torch.cat([self.sink_v[i], self.window_v[i]], dim=2),
        )

    def append(self, ks: list[Tensor], vs: list[Tensor], frame_index: list[int]) -> None:
        """Add a finished block's keys and values, then evict frames beyond the window."""
        index = [*self.window_index, *frame_index]
        drop = max(len(index) - self.window_frames, 0)
        start = drop * self.tokens_per_frame
        for i, (k, v) in enumerate(zip(ks, vs, strict=True)):
            self.window_k[i] = torch.cat([self.window_k[i], k], dim=2)[:, :, start:]
            self.window_v[i] = torch.cat([self.window_v[i], v], dim=2)[:, :, start:]
        self.window_index = index[drop:]


class TinyARBlock(nn.Module):
    """adaLN-zero transformer block modulated per frame. As in Wan, one projection of the
    frame's conditioning is shared by all blocks and each block adds its own learned table,
    which keeps the weights a few MB."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = nn.RMSNorm(dim // heads, eps=1e-6)
        self.k_norm = nn.RMSNorm(dim // heads, eps=1e-6)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.scale_shift_table = nn.Parameter(torch.zeros(6, dim))

    def forward(
        self,
        x: Tensor,
        cond: Tensor,
        rotation: tuple[Tensor, Tensor],
        prefix: tuple[Tensor, Tensor] | None = None,
        mask: Tensor | None = None,
        *,
        need_output: bool = True,
    ) -> tuple[Tensor | None, Tensor, Tensor]:
        """x: (B, T, dim) tokens of whole frames; cond: (B, frames, 6, dim), the shared
        projection of each frame's conditioning;
        rotation: cos/sin tables of the T tokens; prefix: cached keys and values attended
        before this call's own; mask: (T, P + T) bool, True = visible.
        Returns (new x, or None when only the keys are needed; keys; values)."""
        b, t, dim = x.shape
        modulation = (cond + self.scale_shift_table).repeat_interleave(t // cond.shape[1], dim=1)
        shift1, scale1, gate1, shift2, scale2, gate2 = modulation.unbind(2)
        h = self.norm1(x) * (1 + scale1) + shift1
        q, k, v = self.qkv(h).view(b, t, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        k = _rotate(self.k_norm(k), *rotation)
        if not need_output:
            return None, k, v
        q = _rotate(self.q_norm(q), *rotation)
        keys, values = (
            (k, v)
            if prefix is None
            else (
                torch.cat([prefix[0], k], dim=2),
                torch.cat([prefix[1], v], dim=2),
            )
        )
        attn = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
        x = x + gate1 * self.proj(attn.transpose(1, 2).reshape(b, t, dim))
        x = x + gate2 * self.mlp(self.norm2(x) * (1 + scale2) + shift2)
        return x, k, v


class TinyARTransformer(ModelMixin, ConfigMixin):
    """Predicts clean frames (x0) of a noisy block from its conditioning and its context."""

    @register_to_config
    def __init__(
        self,
        height: int = 64,
        width: int = 64,
        patch_size: int = 8,
        channels: int = 3,
        dim: int = 256,
        depth: int = 6,
        heads: int = 4,
        mlp_ratio: float = 4.0,
        feature_size: int = FEATURE_SIZE,
        block_frames: int = 2,
        window_frames: int = 6,
        refine_channels: int = 0,
    ) -> None:
        super().__init__()
        if (dim // heads) < 4 * len(TIME_FREQUENCIES):
            raise ValueError(f"head size {dim // heads} leaves no room for the time channels")
        if height % patch_size or width % patch_size:
            raise ValueError(
                f"{height}x{width} frames do not split into {patch_size}-pixel patches"
            )
        self.grid = (height // patch_size, width // patch_size)
        self.tokens_per_frame = self.grid[0] * self.grid[1]
        patch_values = patch_size * patch_size * channels
        self.patch_in = nn.Linear(patch_values, dim)
        self.position = nn.Parameter(torch.randn(self.tokens_per_frame, dim) * 0.02)
        self.sigma_embed = nn.Sequential(nn.Linear(256, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.feature_embed = nn.Sequential(
            nn.Linear(feature_size, dim), nn.SiLU(), nn.Linear(dim, dim)
        )
        self.reference_embed = nn.Parameter(torch.zeros(dim))
        self.modulation = nn.Linear(dim, 6 * dim)
        self.blocks = nn.ModuleList(TinyARBlock(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm_out = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.modulation_out = nn.Linear(dim, 2 * dim)
        self.patch_out = nn.Linear(dim, patch_values)
        for layer in (self.modulation, self.modulation_out, self.patch_out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        # Each patch is decoded on its own by `patch_out`, so neighbours disagree at their
        # seams: the patch grid. A few 3x3 convolutions over the decoded frame see across the
        # seams and correct them (a residual, zero at first: the model is unchanged until
        # trained). 0 channels: none (the weights shipped before it).
        self.refine = None
        if refine_channels:
            self.refine = nn.Sequential(
                nn.Conv2d(channels, refine_channels, 3, padding=1),
                nn.SiLU(),
                nn.Conv2d(refine_channels, refine_channels, 3, padding=1),
                nn.SiLU(),
                nn.Conv2d(refine_channels, channels, 3, padding=1),
            )
            nn.init.zeros_(self.refine[-1].weight)
            nn.init.zeros_(self.refine[-1].bias)

    # -- frames <-> tokens --------------------------------------------------------------------

    def patchify(self, frames: Tensor) -> Tensor:
        """(B, F, C, H, W) -> (B, F * tokens_per_frame, patch values)."""
        b, f, c, _, _ = frames.shape
        p = self.config.patch_size
        gh, gw = self.grid
        x = frames.reshape(b, f, c, gh, p, gw, p).permute(0, 1, 3, 5, 4, 6, 2)
        return x.reshape(b, f * gh * gw, p * p * c)

    def unpatchify(self, tokens: Tensor, frames: int) -> Tensor:
        b = tokens.shape[0]
        p, c = self.config.patch_size, self.config.channels
        gh, gw = self.grid
        x = tokens.reshape(b, frames, gh, gw, p, p, c).permute(0, 1, 6, 2, 4, 3, 5)
        return x.reshape(b, frames, c, gh * p, gw * p)

    def _embed(self, frames: Tensor, sigma: Tensor, features: Tensor, reference: bool = False):
        """Tokens (B, F * tokens_per_frame, dim) and per-frame conditioning (B, F, dim)."""
        f = frames.shape[1]
        x = self.patch_in(self.patchify(frames)) + self.position.repeat(f, 1)
        cond = self.sigma_embed(_sinusoid(sigma)) + self.feature_embed(features)
        if reference:
            cond = cond + self.reference_embed
        return x, cond

    def _token_index(self, frame_index: list[int]) -> Tensor:
        return torch.tensor(frame_index, device=self.device).repeat_interleave(
            self.tokens_per_frame
        )

    def _block_modulation(self, cond: Tensor) -> Tensor:
        """(B, F, dim) frame conditioning -> (B, F, 6, dim), shared by every block."""
        return self.modulation(F.silu(cond)).unflatten(-1, (6, cond.shape[-1]))

    def _head(self, x: Tensor, cond: Tensor, frames: int) -> Tensor:
        modulation = self.modulation_out(F.silu(cond)).repeat_interleave(self.tokens_per_frame, 1)
        shift, scale = modulation.chunk(2, -1)
        x0 = self.unpatchify(self.patch_out(self.norm_out(x) * (1 + scale) + shift), frames)
        if self.refine is None:
            return x0
        return x0 + self.refine(x0.flatten(0, 1)).view_as(x0)

    # -- streaming ----------------------------------------------------------------------------

    def start_stream(self, reference: Tensor, reference_features: Tensor) -> TinyARCache:
        """A cache holding only the sink: the reference frame (B, 1, C, H, W), clean."""
        cache = TinyARCache(self.config.window_frames, self.tokens_per_frame)
        sigma = torch.zeros(reference.shape[:2], device=reference.device)
        x, cond = self._embed(reference, sigma, reference_features, reference=True)
        rotation = _time_rotation(self._token_index([SINK]))
        modulation = self._block_modulation(cond)
        for block in self.blocks:
            x, k, v = block(x, modulation, rotation)
            cache.sink_k.append(k)
            cache.sink_v.append(v)
            cache.window_k.append(k[:, :, :0])
            cache.window_v.append(v[:, :, :0])
        return cache

    def _block_pass(
        self,
        frames: Tensor,
        sigma: Tensor,
        features: Tensor,
        cache: TinyARCache,
        first_frame: int,
        *,
        write: bool,
    ) -> Tensor | None:
        f = frames.shape[1]
        new_index = list(range(first_frame, first_frame + f))
        x, cond = self._embed(frames, sigma, features)
        rotation = _time_rotation(self._token_index(new_index))
        ks, vs = [], []
        last = len(self.blocks) - 1
        modulation = self._block_modulation(cond)
        for i, block in enumerate(self.blocks):
            x, k, v = block(
                x,
                modulation,
                rotation,
                cache.layer(i),
                need_output=not write or i < last,
            )
            ks.append(k)
            vs.append(v)
        if write:
            cache.append(ks, vs, new_index)
            return None
        return self._head(x, cond, f)

    def denoise_block(
        self, noisy: Tensor, sigma: Tensor, features: Tensor, cache: TinyARCache, first_frame: int
    ) -> Tensor:
        """x0 prediction for a noisy block (B, F, C, H, W) at noise levels sigma (B, F)."""
        out = self._block_pass(noisy, sigma, features, cache, first_frame, write=False)
        assert out is not None
        return out

    def commit_block(
        self, clean: Tensor, features: Tensor, cache: TinyARCache, first_frame: int
    ) -> None:
        """The extra pass at noise level 0 that writes a finished block into the cache."""
        sigma = torch.zeros(clean.shape[:2], device=clean.device)
        self._block_pass(clean, sigma, features, cache, first_frame, write=True)

    # -- training: the whole clip in one pass -------------------------------------------------

    def forward(
        self,
        reference: Tensor,
        reference_features: Tensor,
        context: Tensor,
        context_sigma: Tensor,
        context_features: Tensor,
        noisy: Tensor,
        noisy_sigma: Tensor,
        noisy_features: Tensor,
    ) -> Tensor:
        """x0 predictions for every noisy frame of a clip (B, L, C, H, W), teacher-forced.

        The sequence is [reference, context frames 0..L-1, noisy frames 0..L-1] with a mask that
        lets each frame see exactly what streaming would show it: a context frame sees the
        sink, the `window_frames` frames before its block and its own block; a noisy frame sees
        the sink, the same window of context frames and its own noisy block. Streaming through
        the cache gives the same numbers (tested).
        """
        length = context.shape[1]
        mask = self.clip_attention_mask(length).to(context.device)
        xr, cr = self._embed(
            reference,
            torch.zeros_like(reference_features[..., 0]),
            reference_features,
            reference=True,
        )
        xc, cc = self._embed(context, context_sigma, context_features)
        xn, cn = self._embed(noisy, noisy_sigma, noisy_features)
        x = torch.cat([xr, xc, xn], dim=1)
        cond = torch.cat([cr, cc, cn], dim=1)
        frames = list(range(length))
        rotation = _time_rotation(self._token_index([SINK, *frames, *frames]))
        modulation = self._block_modulation(cond)
        for block in self.blocks:
            x, _, _ = block(x, modulation, rotation, mask=mask)
        start = self.tokens_per_frame * (1 + length)
        return self._head(x[:, start:], cn, length)

    def clip_attention_mask(self, length: int) -> Tensor:
        """(T, T) bool mask, True = visible, over [reference, context, noisy] tokens."""
        block, window = self.config.block_frames, self.config.window_frames
        frame = torch.arange(length)
        start = (frame // block) * block
        same_block = start[:, None] == start[None, :]
        in_window = (frame[None, :] < start[:, None]) & (frame[None, :] >= start[:, None] - window)
        total = 1 + 2 * length
        visible = torch.zeros(total, total, dtype=torch.bool)
        visible[:, 0] = True
        visible[1 : 1 + length, 1 : 1 + length] = in_window | same_block
        visible[1 + length :, 1 : 1 + length] = in_window
        visible[1 + length :, 1 + length :] = same_block
        visible[0, 1:] = False
        n = self.tokens_per_frame
        return visible.repeat_interleave(n, 0).repeat_interleave(n, 1)
