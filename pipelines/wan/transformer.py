"""Block-causal, KV-cached Wan2.1 text-to-video transformer with diffusers' parameter names.

diffusers 0.42's `WanTransformer3DModel` only runs a whole clip at once: RoPE always starts at
frame 0 and attention has no cache. Streaming (Self-Forcing, LongLive) needs the same weights
run one block of latent frames at a time, each block attending to the frames before it through
a KV cache, with absolute frame positions continuing across blocks and a noise level per frame.
This module re-implements the model's maths for that, keeping diffusers' module tree and config
so a diffusers state dict (or `from_pretrained` folder) loads with strict=True.

It knows the model only: the layers (and their diffusers names) live in `layers.py`, cache
bookkeeping in `cache.py`, checkpoint key tables in `weights.py`, the schedule in `schedule.py`.
Text-to-video only (no image embedder, `added_kv_proj_dim` or `image_dim`), temporal patch size
1 as in Wan2.1. Call it under `torch.inference_mode()`: the cache keeps tensors across calls.
"""

from __future__ import annotations

import functools
import math
from typing import ClassVar

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from pipelines.wan.cache import WanKVCache
from pipelines.wan.layers import ConditionEmbedder, FP32LayerNorm, Rope, WanBlock, per_frame

ROPE_THETA = 10000.0
ROPE_TABLES_KEPT = 8
"""Memoized RoPE tables (one per block position and frame size in use)."""


class CausalWanTransformer(ModelMixin, ConfigMixin):
    """Wan2.1 T2V transformer run block by block against a `WanKVCache`.

    Config fields and parameter names are exactly those of diffusers'
    `WanTransformer3DModel`, so `CausalWanTransformer.from_config(wan.config)` followed by
    `load_state_dict(wan.state_dict(), strict=True)` (or `from_pretrained` on a diffusers Wan
    transformer folder) gives the same model. Timesteps are per latent frame.
    """

    _keep_in_fp32_modules: ClassVar[list[str]] = [
        "time_embedder",
        "scale_shift_table",
        "norm1",
        "norm2",
        "norm3",
    ]
    _no_split_modules: ClassVar[list[str]] = ["WanBlock"]

    @register_to_config
    def __init__(
        self,
        patch_size: tuple[int, ...] = (1, 2, 2),
        num_attention_heads: int = 40,
        attention_head_dim: int = 128,
        in_channels: int = 16,
        out_channels: int = 16,
        text_dim: int = 4096,
        freq_dim: int = 256,
        ffn_dim: int = 13824,
        num_layers: int = 40,
        cross_attn_norm: bool = True,
        qk_norm: str | None = "rms_norm_across_heads",
        eps: float = 1e-6,
        image_dim: int | None = None,
        added_kv_proj_dim: int | None = None,
        rope_max_seq_len: int = 1024,
        pos_embed_seq_len: int | None = None,
    ) -> None:
        super().__init__()
        if image_dim is not None or added_kv_proj_dim is not None or pos_embed_seq_len is not None:
            raise NotImplementedError(
                "CausalWanTransformer is text-to-video only (no image inputs)"
            )
        if qk_norm != "rms_norm_across_heads":
            raise NotImplementedError(
                f"qk_norm={qk_norm!r}: only 'rms_norm_across_heads' is supported"
            )
        if patch_size[0] != 1:
            raise NotImplementedError("only temporal patch size 1 (Wan2.1) is supported")
        if attention_head_dim % 2:
            raise ValueError("attention_head_dim must be even for RoPE")
        dim = num_attention_heads * attention_head_dim
        self.patch_embedding = nn.Conv3d(
            in_channels, dim, kernel_size=patch_size, stride=patch_size
        )
        self.condition_embedder = ConditionEmbedder(dim, freq_dim, text_dim)
        self.blocks = nn.ModuleList(
            [
                WanBlock(dim, ffn_dim, num_attention_heads, cross_attn_norm, eps)
                for _ in range(num_layers)
            ]
        )
        self.norm_out = FP32LayerNorm(dim, eps, elementwise_affine=False)
        self.proj_out = nn.Linear(dim, (out_channels or in_channels) * math.prod(patch_size))
        self.scale_shift_table = nn.Parameter(torch.randn(1, 2, dim) / dim**0.5)

    # -- public API ---------------------------------------------------------------------------

    def new_cache(self, *, sink_frames: int = 0, window_frames: int | None = None) -> WanKVCache:
        """An empty cache sized for this model's layers."""
        return WanKVCache(len(self.blocks), sink_frames=sink_frames, window_frames=window_frames)

    def compile_blocks(self, **options: object) -> None:
        """torch.compile every block's per-token work (`WanBlock.compile_regions`).

        The graphs have fixed shapes (one block's tokens, the prompt's length), so they compile
        once, on the first pass, and serve every layer, pass and block after it; attention over
        the cache, whose length changes, stays eager.
        """
        for block in self.blocks:
            block.compile_regions(**options)

    def forward_block(
        self,
        latents: torch.Tensor,
        timestep: float | torch.Tensor,
        text_states: torch.Tensor,
        cache: WanKVCache,
        *,
        start_frame: int,
        update_cache: bool,
    ) -> torch.Tensor:
        """Denoiser output (flow prediction) for one block of latent frames.

        latents (b, c, f, h, w) are absolute frames [start_frame, start_frame + f); they attend
        to each other and to the cached frames the cache lets them see. timestep: a number,
        (b,) or per frame (b, f). text_states (b, text_len, text_dim): the cross-attention
        K/V are computed once per prompt tensor (by identity) and kept in the cache. With
        update_cache=True (Self-Forcing's extra pass at t=0 on the clean block) the block's
        keys/values are kept in the cache; other passes leave what it holds unchanged.
        """
        frames = latents.shape[2]
        out = self._run(
            latents,
            timestep,
            text_states,
            start_frame=start_frame,
            cache=cache,
        )
        if update_cache:
            cache.commit(start_frame, frames)
        return out

    def recache(
        self,
        clean_latents: torch.Tensor,
        text_states: torch.Tensor,
        cache: WanKVCache,
        *,
        start_frame: int,
        block_frames: int,
        keep_sink: bool = True,
    ) -> None:
        """LongLive's KV re-cache after a prompt switch: re-encode recent clean frames.

        Drops the old prompt's cross K/V, rewinds the cache to `start_frame` (keep_sink=True,
        LongLive's global sink: earlier sink frames stay) or empties it (keep_sink=False: the
        re-encoded frames become the sink), then writes `clean_latents` (absolute frames from
        `start_frame`) block by block at t=0 under the new prompt.
        """
        cache.clear_text()
        if keep_sink and cache.next_frame is not None:
            cache.rewind(start_frame)
        elif not keep_sink:
            cache.reset()
        for offset in range(0, clean_latents.shape[2], block_frames):
            block = clean_latents[:, :, offset : offset + block_frames]
            self.forward_block(
                block, 0.0, text_states, cache, start_frame=start_frame + offset, update_cache=True
            )

    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: float | torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        *,
        frame_mask: torch.Tensor | None = None,
        start_frame: int = 0,
    ) -> torch.Tensor:
        """Whole-clip pass without a cache, optionally masked (frame_mask[q, k]: frame q sees k).

        With no mask this is diffusers' `WanTransformer3DModel.forward` (bidirectional); with a
        block-causal mask it is what `forward_block` computes block by block.
        """
        frames = hidden_states.shape[2]
        mask = None
        if frame_mask is not None:
            if frame_mask.shape != (frames, frames):
                raise ValueError(
                    f"frame_mask must be ({frames}, {frames}), got {tuple(frame_mask.shape)}"
                )
            mask = frame_mask
        return self._run(
            hidden_states, timestep, encoder_hidden_states, start_frame=start_frame, frame_mask=mask
        )

    # -- internals -------------------------------------------------------------------------

    def _run(
        self,
        latents: torch.Tensor,
        timestep: float | torch.Tensor,
        text_states: torch.Tensor,
        *,
        start_frame: int,
        cache: WanKVCache | None = None,
        frame_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Shared body of `forward` and `forward_block`: embed, run the blocks, unpatchify."""
        batch, _, frames, height, width = latents.shape
        _, p_h, p_w = self.config.patch_size
        grid = (frames, height // p_h, width // p_w)
        tokens_per_frame = grid[1] * grid[2]

        x = self.patch_embedding(latents).flatten(2).transpose(1, 2).contiguous()
        timesteps = _frame_timesteps(timestep, batch, frames, latents.device)
        temb, modulation = self.condition_embedder.time(timesteps, text_states.dtype)
        rope = self._rope(start_frame, grid, x.device)
        if cache is not None:
            cache.begin(start_frame, frames, tokens_per_frame)
        mask = None
        if frame_mask is not None:
            mask = frame_mask.to(x.device, torch.bool)
            mask = mask.repeat_interleave(tokens_per_frame, 0).repeat_interleave(
                tokens_per_frame, 1
            )

        if cache is not None and cache.text_states is not text_states:
            cache.clear_text()
            cache.text_states = text_states
        context = None

        for index, block in enumerate(self.blocks):
            cross = cache.cross(index) if cache is not None else None
            if cross is None:
                if context is None:
                    context = self.condition_embedder.text_embedder(text_states)
                cross = block.attn2.project_kv(context, None)
                if cache is not None:
                    cache.set_cross(index, cross)
            attend_to = functools.partial(cache.attend, index) if cache is not None else None
            x = block(x, modulation, rope, cross, attend_to=attend_to, mask=mask)

        shift, scale = (self.scale_shift_table.unsqueeze(1) + temb.unsqueeze(2)).chunk(2, dim=2)
        x = (per_frame(self.norm_out(x.float()), frames) * (1 + scale) + shift).flatten(1, 2)
        x = self.proj_out(x.type_as(latents))
        return _unpatchify(x, grid, tuple(self.config.patch_size))

    def _rope(self, start_frame: int, grid: tuple[int, int, int], device: torch.device) -> Rope:
        return rope_table(self.config.attention_head_dim, start_frame, grid, device)


@functools.lru_cache(maxsize=ROPE_TABLES_KEPT)
def rope_table(
    head_dim: int, start_frame: int, grid: tuple[int, int, int], device: torch.device
) -> Rope:
    """Angles (tokens, 1, head_dim / 2) for frames at absolute positions from start_frame.

    Wan splits each head's rotary pairs into temporal / height / width groups (diffusers'
    `WanRotaryPosEmbed`: h = w = 2 * (d // 6) channels, the rest temporal). Angles are
    computed in float64 from the position, so frame indices past `rope_max_seq_len` keep
    working (the published models were trained on far fewer frames: quality there is the
    window's business, not this function's). Memoized: every denoising pass of a block and
    every layer uses the same table. Callers must not modify the returned tensors.
    """
    h_dim = w_dim = 2 * (head_dim // 6)
    t_dim = head_dim - h_dim - w_dim
    frames, height, width = grid
    axes = []
    for dim, positions in (
        (t_dim, torch.arange(start_frame, start_frame + frames)),
        (h_dim, torch.arange(height)),
        (w_dim, torch.arange(width)),
    ):
        inv = 1.0 / ROPE_THETA ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)
        axes.append(torch.outer(positions.to(torch.float64), inv))
    t, h, w = axes
    angles = torch.cat(
        [
            t[:, None, None, :].expand(frames, height, width, -1),
            h[None, :, None, :].expand(frames, height, width, -1),
            w[None, None, :, :].expand(frames, height, width, -1),
        ],
        dim=-1,
    ).reshape(frames * height * width, 1, -1)
    cos, sin = angles.cos().float().to(device), angles.sin().float().to(device)
    return Rope(cos, sin, torch.complex(cos, sin))


def _frame_timesteps(
    timestep: float | torch.Tensor, batch: int, frames: int, device: torch.device
) -> torch.Tensor:
    """A number, (b,) or (b, f) -> (b, f) float timesteps, one per latent frame."""
    t = torch.as_tensor(timestep, dtype=torch.float32, device=device)
    if t.ndim == 0:
        return t.expand(batch, frames)
    if t.ndim == 1 and t.shape[0] == batch:
        return t[:, None].expand(batch, frames)
    if t.shape == (batch, frames):
        return t
    raise ValueError(
        f"timestep must be a number, ({batch},) or ({batch}, {frames}); got {tuple(t.shape)}"
    )


def _unpatchify(
    x: torch.Tensor, grid: tuple[int, int, int], patch: tuple[int, ...]
) -> torch.Tensor:
    """(b, tokens, p_t * p_h * p_w * c) -> (b, c, f, h, w), diffusers' ordering."""
    frames, height, width = grid
    p_t, p_h, p_w = patch
    x = x.reshape(x.shape[0], frames, height, width, p_t, p_h, p_w, -1)
    x = x.permute(0, 7, 1, 4, 2, 5, 3, 6)
    return x.flatten(6, 7).flatten(4, 5).flatten(2, 3)
