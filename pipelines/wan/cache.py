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

Storage is one preallocated buffer per layer, so attention reads the cache in place instead of
concatenating it every pass. Each frame owns a fixed slot: sink frames the first slots, later
frames a ring of `window_frames` slots after them (without a window, slot = frame - first).
Every pass of a block (noisy or not) writes its own keys into its frames' slots, which hold
only frames that neither this block nor any later one can see; attention then reads the
slots of the visible frames plus the block's own. In a steady stream those are all the slots,
one contiguous view. Attention does not care about key order (softmax over a set), so the
ring's rotation costs nothing. Only after a rewind (re-cache) can the visible slots split into
runs, which are then concatenated.

Keys are stored after RoPE, at their absolute frame positions, shaped (batch, tokens, heads,
head_dim): the token axis is contiguous per frame, and the layout is the one attention kernels
read natively. This module knows nothing about the model's weights or maths; the transformer
drives it through `begin`, `attend` and `commit`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass
class KeyValue:
    """Keys and values of one attention layer, shaped (batch, tokens, heads, head_dim)."""

    key: torch.Tensor
    value: torch.Tensor


@dataclass(frozen=True)
class _Plan:
    """Where one block's pass writes and reads, in frame slots (same for every layer)."""

    start: int
    frames: int
    tokens_per_frame: int
    writes: tuple[tuple[int, int, int], ...]
    """(first slot, first frame of the block, frames) runs of the block's own frames."""
    reads: tuple[tuple[int, int], ...]
    """(first slot, slots) runs to attend to: the visible cached frames and the block."""
    capacity: int
    """Slots the buffers must hold for this pass."""


class WanKVCache:
    """Self-attention frames (sink + rolling window) and per-prompt cross-attention K/V.

    One instance serves one stream. For each pass of a block the transformer calls
    `begin(start, frames, tokens_per_frame)` once, then `attend(layer, kv)` in every layer
    (writes the block's keys, returns what to attend to), and `commit(start, frames)` after a
    pass whose keys are to be kept (the t=0 pass).
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
        self._keys: list[torch.Tensor | None] = [None] * self.num_layers
        self._values: list[torch.Tensor | None] = [None] * self.num_layers
        self._slots = 0
        """Frame slots the buffers hold (they are allocated at the first write)."""
        self._plan: _Plan | None = None
        self._written: set[int] = set()
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
        self.frames = [f for f in self.frames if f < frame]
        self.next_frame = frame
        self._plan = None
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

    def begin(self, start: int, frames: int, tokens_per_frame: int) -> None:
        """Plan one pass of the block [start, start + frames) for every layer.

        Held frames whose slots the block takes are dropped here: none of them is visible to
        this block or any later one (they fell out of the window), so this changes nothing a
        caller could see except after a rewind to before them without a commit in between.
        """
        self.check_block(start, frames)
        if self.tokens_per_frame not in (None, tokens_per_frame):
            raise ValueError("the frame size (tokens per frame) changed within a stream")
        first = start if self.first_frame is None else self.first_frame
        own = [self._slot(f, first) for f in range(start, start + frames)]
        taken = set(own)
        self.frames = [f for f in self.frames if self._slot(f, first) not in taken]
        end = start + frames
        visible = [self._slot(f, first) for f in self.frames if self._sees(f, end, first)]
        writes: list[tuple[int, int, int]] = []
        for offset, slot in enumerate(own):
            if writes and writes[-1][0] + writes[-1][2] == slot:
                writes[-1] = (writes[-1][0], writes[-1][1], writes[-1][2] + 1)
            else:
                writes.append((slot, offset, 1))
        reads: list[tuple[int, int]] = []
        for slot in sorted(visible + own):
            if reads and reads[-1][0] + reads[-1][1] == slot:
                reads[-1] = (reads[-1][0], reads[-1][1] + 1)
            else:
                reads.append((slot, 1))
        self._plan = _Plan(
            start=start,
            frames=frames,
            tokens_per_frame=tokens_per_frame,
            writes=tuple(writes),
            reads=tuple(reads),
            capacity=self._capacity(max(own) + 1),
        )
        self._slots = self._plan.capacity
        self._written = set()

    def attend(self, layer: int, own: KeyValue) -> KeyValue:
        """Write the block's keys/values for `layer` into its slots; return what it attends to.

        The result holds the visible cached frames and the block itself: a view of the buffer
        when they are one run of slots (the steady state), else the runs concatenated.
        """
        plan = self._plan
        if plan is None:
            raise RuntimeError("attend called before begin")
        size = plan.tokens_per_frame
        keys, values = self._buffers(layer, own, plan.capacity * size)
        for slot, offset, count in plan.writes:
            a, b = offset * size, (offset + count) * size
            keys[:, slot * size : slot * size + b - a].copy_(own.key[:, a:b])
            values[:, slot * size : slot * size + b - a].copy_(own.value[:, a:b])
        self._written.add(layer)
        return self._read(keys, values, plan.reads, size)

    def commit(self, start: int, frames: int) -> None:
        """Keep the block [start, start + frames) the last pass wrote in every layer, then evict."""
        plan = self._plan
        if plan is None or (plan.start, plan.frames) != (start, frames):
            raise RuntimeError(f"commit({start}, {frames}) does not match the last pass planned")
        if len(self._written) != self.num_layers:
            raise RuntimeError("commit called before every layer wrote its keys/values")
        self.tokens_per_frame = plan.tokens_per_frame
        if self.first_frame is None:
            self.first_frame = start
        self.frames += list(range(start, start + frames))
        self.next_frame = start + frames
        self._evict()

    def visible(self, layer: int, start: int, end: int) -> KeyValue | None:
        """Cached keys/values of `layer` that a block [start, end) would see (for inspection)."""
        keys, values = self._keys[layer], self._values[layer]
        if keys is None or values is None or self.first_frame is None:
            return None
        first = self.first_frame
        slots = sorted(
            self._slot(f, first) for f in self.frames if f < start and self._sees(f, end, first)
        )
        if not slots:
            return None
        size = self.tokens_per_frame
        assert size is not None
        return self._read(keys, values, tuple((slot, 1) for slot in slots), size)

    def cross(self, layer: int) -> KeyValue | None:
        return self._cross[layer]

    def set_cross(self, layer: int, kv: KeyValue) -> None:
        self._cross[layer] = kv

    # -- internals --------------------------------------------------------------------------

    def _slot(self, frame: int, first: int) -> int:
        offset = frame - first
        if self.window_frames is None or offset < self.sink_frames:
            return offset
        return self.sink_frames + (offset - self.sink_frames) % self.window_frames

    def _capacity(self, needed: int) -> int:
        """Slots to hold: sink + window, or (no window) enough, grown by doubling."""
        if self.window_frames is not None:
            return self.sink_frames + self.window_frames
        return self._slots if self._slots >= needed else max(needed, 2 * self._slots)

    def _sees(self, frame: int, end: int, first: int) -> bool:
        in_sink = frame < first + self.sink_frames
        in_window = self.window_frames is None or frame >= end - self.window_frames
        return in_sink or in_window

    def _evict(self) -> None:
        """Keep the sink and the frames any next block (at least one frame long) can see."""
        if self.window_frames is None or not self.frames or self.first_frame is None:
            return
        next_end = self.frames[-1] + 2
        self.frames = [f for f in self.frames if self._sees(f, next_end, self.first_frame)]

    def _buffers(
        self, layer: int, like: KeyValue, tokens: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The layer's key/value buffers, allocated (or grown, keeping their contents) to fit."""
        keys, values = self._keys[layer], self._values[layer]
        if keys is None or values is None or keys.shape[1] < tokens:
            batch, _, heads, dim = like.key.shape
            new_keys = like.key.new_empty(batch, tokens, heads, dim)
            new_values = like.value.new_empty(batch, tokens, heads, dim)
            if keys is not None and values is not None:
                new_keys[:, : keys.shape[1]].copy_(keys)
                new_values[:, : values.shape[1]].copy_(values)
            keys, values = new_keys, new_values
            self._keys[layer], self._values[layer] = keys, values
        elif keys.shape[0] != like.key.shape[0] or keys.dtype != like.key.dtype:
            raise ValueError("batch size or dtype changed within a stream; reset() the cache")
        return keys, values

    @staticmethod
    def _read(
        keys: torch.Tensor, values: torch.Tensor, runs: tuple[tuple[int, int], ...], size: int
    ) -> KeyValue:
        """The tokens of slot runs: one slice (a view) or, after a rewind, a concatenation."""
        import torch

        merged: list[tuple[int, int]] = []
        for slot, count in runs:
            if merged and merged[-1][0] + merged[-1][1] == slot:
                merged[-1] = (merged[-1][0], merged[-1][1] + count)
            else:
                merged.append((slot, count))
        spans = [(slot * size, (slot + count) * size) for slot, count in merged]
        if len(spans) == 1:
            ((a, b),) = spans
            return KeyValue(keys[:, a:b], values[:, a:b])
        return KeyValue(
            torch.cat([keys[:, a:b] for a, b in spans], dim=1),
            torch.cat([values[:, a:b] for a, b in spans], dim=1),
        )
