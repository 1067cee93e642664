"""The KV cache of the block-causal Wan transformer: which past frames a new block may see.

Streaming generation (Self-Forcing, LongLive) denoises one block of latent frames at a time
against the keys and values of the frames already generated. This module holds those keys and
values and decides which of them stay: an attention *sink* (the first `sink_frames` frames
written since the last reset, kept for ever because they anchor the attention distribution)
plus a rolling *window* of the most recent frames. It also holds the cross-attention keys and
values of the current prompt, which do not change from block to block.

Window semantics: a block covering absolute frames [start, end) sees every cached frame `j`
with `j >= end - window_frames` (the window counts the block's own frames) or `j` in the sink.
LongLive's `local_attn_size=12, sink_size=3` is `sink_frames=3, window_frames=9` here: 12
frames in all. `window_frames=None` keeps every frame (Self-Forcing's default).

Keys are stored after RoPE, at their absolute frame positions, shaped (batch, heads, tokens,
head_dim) so attention can concatenate them with a new block's keys along the token axis.
This module knows nothing about the model's weights or maths; the transformer reads and writes
it through `visible`, `stage` and `commit`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass
class KeyValue:
    """Keys and values of one attention layer, shaped (batch, heads, tokens, head_dim)."""

    key: torch.Tensor
    value: torch.Tensor


class WanKVCache:
    """Self-attention frames (sink + rolling window) and per-prompt cross-attention K/V.

    One instance serves one stream. The transformer calls `visible(layer, start, end)` to get
    the cached keys a block may attend to, `stage(layer, kv)` to hand over a block's own keys
    when the block is to be kept, and `commit(start, frames)` once all layers have staged.
    """

    def __init__(
        self, num_layers: int, *, sink_frames: int = 0, window_frames: int | None = None
    ) -> None:
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {num_layers}")
        if sink_frames < 0:
            raise ValueError(f"sink_frames must be >= 0, got {sink_frames}")
        if window_frames is not None and window_frames < 1:
            raise ValueError(f"window_frames must be >= 1 or None, got {window_frames}")
        self.num_layers = num_layers
        self.sink_frames = sink_frames
        self.window_frames = window_frames
        self.reset()

    # -- lifecycle --------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget everything: a new stream (or LongLive's re-cache without a global sink)."""
        self.frames: list[int] = []
        """Absolute indices of the frames held, ascending; same for every layer."""
        self.first_frame: int | None = None
        """The first frame written since the reset; the sink is [first, first + sink_frames)."""
        self.next_frame: int | None = None
        """Where the next block must start: after the last block written, or a rewind point."""
        self.tokens_per_frame: int | None = None
        self._self: list[KeyValue | None] = [None] * self.num_layers
        self._staged: list[KeyValue | None] = [None] * self.num_layers
        self.clear_text()

    def clear_text(self) -> None:
        """Drop the prompt's cross-attention K/V (a prompt switch); frames are kept."""
        self.text_states: torch.Tensor | None = None
        """The prompt tensor the cross K/V were computed from (compared by identity)."""
        self._cross: list[KeyValue | None] = [None] * self.num_layers

    def rewind(self, frame: int) -> None:
        """Drop every held frame at or after `frame`, so those frames can be written again.

        Used before a re-cache: the sink (if before `frame`) stays, the recent frames are
        recomputed with the new prompt. Frames already evicted cannot be brought back.
        """
        if self.next_frame is None or frame > self.next_frame:
            raise ValueError(f"cannot rewind to frame {frame}: the cache ends at {self.next_frame}")
        self._select([i for i, f in enumerate(self.frames) if f < frame])
        self.next_frame = frame
        if not self.frames:
            self.first_frame = self.next_frame = None

    # -- what the transformer uses ----------------------------------------------------------

    def check_block(self, start: int, frames: int) -> None:
        """Refuse a block that does not directly follow the cached frames."""
        if frames < 1:
            raise ValueError("a block needs at least one latent frame")
        if self.window_frames is not None and frames > self.window_frames:
            raise ValueError(
                f"a block of {frames} frames is longer than the window ({self.window_frames})"
            )
        if self.next_frame is not None and start != self.next_frame:
            raise ValueError(
                f"block starts at frame {start} but the cache ends at frame {self.next_frame}; "
                "call rewind(start) to recompute frames, or reset() for a new stream"
            )

    def visible_frames(self, start: int, end: int) -> list[int]:
        """Positions (into `frames`) of the cached frames a block [start, end) attends to."""
        return [i for i, f in enumerate(self.frames) if f < start and self._sees(f, end)]

    def visible(self, layer: int, start: int, end: int) -> KeyValue | None:
        """Cached keys/values of `layer` that the block [start, end) may see, or None."""
        held = self._self[layer]
        if held is None:
            return None
        positions = self.visible_frames(start, end)
        if not positions:
            return None
        if len(positions) == len(self.frames):
            return held
        return self._gather(held, positions)

    def stage(self, layer: int, kv: KeyValue) -> None:
        """Hand over a block's keys/values for `layer`; they join the cache on `commit`."""
        self._staged[layer] = kv

    def commit(self, start: int, frames: int) -> None:
        """Append the staged block [start, start + frames) to every layer, then evict."""
        import torch

        if any(kv is None for kv in self._staged):
            raise RuntimeError("commit called before every layer staged its keys/values")
        staged = [kv for kv in self._staged if kv is not None]
        tokens = staged[0].key.shape[2]
        if tokens % frames:
            raise ValueError(f"{tokens} staged tokens do not split into {frames} frames")
        if self.tokens_per_frame not in (None, tokens // frames):
            raise ValueError("the frame size (tokens per frame) changed within a stream")
        self.tokens_per_frame = tokens // frames
        if self.first_frame is None:
            self.first_frame = start
        for layer, new in enumerate(staged):
            held = self._self[layer]
            self._self[layer] = (
                new
                if held is None
                else KeyValue(
                    torch.cat([held.key, new.key], 2), torch.cat([held.value, new.value], 2)
                )
            )
        self.frames += list(range(start, start + frames))
        self.next_frame = start + frames
        self._staged = [None] * self.num_layers
        self._evict()

    def cross(self, layer: int) -> KeyValue | None:
        return self._cross[layer]

    def set_cross(self, layer: int, kv: KeyValue) -> None:
        self._cross[layer] = kv

    # -- internals --------------------------------------------------------------------------

    def _sees(self, frame: int, end: int) -> bool:
        in_sink = self.first_frame is not None and frame < self.first_frame + self.sink_frames
        in_window = self.window_frames is None or frame >= end - self.window_frames
        return in_sink or in_window

    def _evict(self) -> None:
        """Keep the sink and the frames any next block (at least one frame long) can see."""
        if self.window_frames is None or not self.frames:
            return
        next_end = self.frames[-1] + 2
        keep = [i for i, f in enumerate(self.frames) if self._sees(f, next_end)]
        if len(keep) < len(self.frames):
            self._select(keep)

    def _select(self, positions: list[int]) -> None:
        if len(positions) == len(self.frames):
            return
        self.frames = [self.frames[i] for i in positions]
        for layer, held in enumerate(self._self):
            if held is not None:
                kept = self._gather(held, positions) if positions else None
                self._self[layer] = (
                    KeyValue(kept.key.contiguous(), kept.value.contiguous()) if kept else None
                )

    def _gather(self, held: KeyValue, positions: list[int]) -> KeyValue:
        """The tokens of the frames at `positions`, by slicing runs of consecutive frames.

        Held frames are the sink plus one recent run, so this is one slice (a view) or the
        concatenation of two: no index tensors, no host-to-device copies.
        """
        import torch

        size = self.tokens_per_frame
        assert size is not None
        runs: list[tuple[int, int]] = []
        for position in positions:
            if runs and runs[-1][1] == position * size:
                runs[-1] = (runs[-1][0], (position + 1) * size)
            else:
                runs.append((position * size, (position + 1) * size))
        if len(runs) == 1:
            ((a, b),) = runs
            return KeyValue(held.key[:, :, a:b], held.value[:, :, a:b])
        return KeyValue(
            torch.cat([held.key[:, :, a:b] for a, b in runs], dim=2),
            torch.cat([held.value[:, :, a:b] for a, b in runs], dim=2),
        )
