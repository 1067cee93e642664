"""Block by block with the KV cache equals one masked pass over the whole sequence.

The reference is `CausalWanTransformer.forward` with a block-causal frame mask written from the
rule in `tests.wan_tiny.block_causal_mask` (not from the cache's code): so these tests check
the cache's bookkeeping (which frames it keeps, sink and window eviction, RoPE positions that
continue across blocks, cross-attention reuse) against plain attention masking. Float32 on
CPU; SDPA sums over a different number of masked-out keys in the two paths, hence
atol = rtol = 1e-5 on outputs of magnitude ~1-10 (observed differences are ~5e-6).
"""

from __future__ import annotations

import pytest
import torch

from tests.wan_tiny import block_causal_mask, frame_timesteps, latents, text, tiny_model

ATOL = RTOL = 1e-5
FRAMES, BLOCK = 10, 2


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return tiny_model(seed=0)


@pytest.mark.parametrize(
    ("sink", "window"),
    [(0, None), (2, 4), (0, 4), (1, 6)],
    ids=["no-window", "sink2-window4", "window4", "sink1-window6"],
)
@torch.no_grad()
def test_blocks_with_cache_equal_masked_whole_pass(
    model: torch.nn.Module, sink: int, window: int | None
) -> None:
    x, prompt, t = latents(FRAMES), text(), frame_timesteps(FRAMES)
    cache = model.new_cache(sink_frames=sink, window_frames=window)
    blocks = [
        model.forward_block(
            x[:, :, s : s + BLOCK],
            t[:, s : s + BLOCK],
            prompt,
            cache,
            start_frame=s,
            update_cache=True,
        )
        for s in range(0, FRAMES, BLOCK)
    ]
    mask = block_causal_mask(FRAMES, BLOCK, sink=sink, window=window)
    expected = model(x, t, prompt, frame_mask=mask)
    torch.testing.assert_close(torch.cat(blocks, dim=2), expected, atol=ATOL, rtol=RTOL)
    # Memory stays bounded: the sink plus what the next block can still see.
    if window is not None:
        assert cache.frames == sorted(set(range(sink)) | set(range(FRAMES - window + 1, FRAMES)))


@torch.no_grad()
def test_self_forcing_loop_denoise_passes_do_not_touch_the_cache(model: torch.nn.Module) -> None:
    """Noisy passes (update_cache=False) then a t=0 pass on the clean block that writes it.

    Each noisy pass must equal a masked whole pass over [clean past frames, noisy block] with
    timestep 0 on the past (teacher forcing): the cache holds exactly the clean history.
    """
    sink, window = 1, 4
    clean, noise, prompt = latents(FRAMES, seed=5), latents(FRAMES, seed=6), text()
    cache = model.new_cache(sink_frames=sink, window_frames=window)
    for s in range(0, FRAMES, BLOCK):
        end = s + BLOCK
        for level in (1000.0, 625.0):
            got = model.forward_block(
                noise[:, :, s:end], level, prompt, cache, start_frame=s, update_cache=False
            )
            history = torch.cat([clean[:, :, :s], noise[:, :, s:end]], dim=2)
            t = torch.zeros(1, end)
            t[:, s:end] = level
            mask = block_causal_mask(end, BLOCK, sink=sink, window=window)
            expected = model(history, t, prompt, frame_mask=mask)[:, :, s:end]
            torch.testing.assert_close(got, expected, atol=ATOL, rtol=RTOL)
        model.forward_block(
            clean[:, :, s:end], 0.0, prompt, cache, start_frame=s, update_cache=True
        )


@torch.no_grad()
def test_stream_started_late_equals_stream_started_at_zero(model: torch.nn.Module) -> None:
    # RoPE makes attention depend on relative frame offsets only, so a whole stream shifted
    # to start at frame 100 (past the tiny config's rope_max_seq_len of 64, where diffusers'
    # table ends) gives the same outputs: positions keep working however long a stream runs.
    # (That positions continue across blocks at all is what the masked-pass tests check.)
    x, prompt, t = latents(6), text(), frame_timesteps(6)
    outputs = []
    for origin in (0, 100):
        cache = model.new_cache(sink_frames=1, window_frames=4)
        outputs.append(
            torch.cat(
                [
                    model.forward_block(
                        x[:, :, s : s + BLOCK],
                        t[:, s : s + BLOCK],
                        prompt,
                        cache,
                        start_frame=origin + s,
                        update_cache=True,
                    )
                    for s in range(0, 6, BLOCK)
                ],
                dim=2,
            )
        )
    torch.testing.assert_close(outputs[1], outputs[0], atol=ATOL, rtol=RTOL)


@torch.no_grad()
def test_cross_attention_kv_cached_per_prompt_and_cleared(model: torch.nn.Module) -> None:
    x, first_prompt, second_prompt = latents(BLOCK), text(seed=2), text(seed=9)
    cache = model.new_cache()
    out = model.forward_block(x, 300.0, first_prompt, cache, start_frame=0, update_cache=False)
    held = cache.cross(0)
    assert held is not None and cache.text_states is first_prompt
    again = model.forward_block(x, 300.0, first_prompt, cache, start_frame=0, update_cache=False)
    assert cache.cross(0) is held  # reused, not recomputed
    assert torch.equal(out, again)
    switched = model.forward_block(
        x, 300.0, second_prompt, cache, start_frame=0, update_cache=False
    )
    assert cache.cross(0) is not held  # a new prompt tensor recomputes the K/V
    fresh = model.forward_block(
        x, 300.0, second_prompt, model.new_cache(), start_frame=0, update_cache=False
    )
    assert torch.equal(switched, fresh)
    cache.clear_text()
    assert cache.cross(0) is None and cache.text_states is None


@torch.no_grad()
def test_recache_rewrites_recent_frames_under_the_new_prompt(model: torch.nn.Module) -> None:
    """LongLive's re-cache keeping the (global) sink: after a prompt switch the frames after
    the sink are re-encoded at t=0 under the new prompt. The next block must then equal a
    stream whose sink was written under the old prompt and everything after under the new."""
    sink, window = 2, 4
    clean, prompt_a, prompt_b = latents(FRAMES, seed=5), text(seed=2), text(seed=9)

    def write(cache: object, start: int, stop: int, prompt: torch.Tensor) -> None:
        for s in range(start, stop, BLOCK):
            model.forward_block(
                clean[:, :, s : s + BLOCK], 0.0, prompt, cache, start_frame=s, update_cache=True
            )

    def next_block(cache: object, prompt: torch.Tensor) -> torch.Tensor:
        return model.forward_block(
            clean[:, :, 8:10], 400.0, prompt, cache, start_frame=8, update_cache=False
        )

    cache = model.new_cache(sink_frames=sink, window_frames=window)
    write(cache, 0, 8, prompt_a)
    stale = next_block(cache, prompt_b)  # new prompt, old prompt's self-attention K/V
    model.recache(clean[:, :, 2:8], prompt_b, cache, start_frame=2, block_frames=BLOCK)
    assert cache.frames == [0, 1, 5, 6, 7]
    got = next_block(cache, prompt_b)

    reference = model.new_cache(sink_frames=sink, window_frames=window)
    write(reference, 0, 2, prompt_a)
    write(reference, 2, 8, prompt_b)
    torch.testing.assert_close(got, next_block(reference, prompt_b), atol=ATOL, rtol=RTOL)
    assert not torch.allclose(got, stale, atol=1e-3)


def test_cache_refuses_gaps_and_blocks_longer_than_the_window(model: torch.nn.Module) -> None:
    cache = model.new_cache(window_frames=2)
    with torch.no_grad():
        model.forward_block(latents(2), 0.0, text(), cache, start_frame=0, update_cache=True)
        with pytest.raises(ValueError, match="cache ends at frame 2"):
            model.forward_block(latents(2), 0.0, text(), cache, start_frame=4, update_cache=False)
        with pytest.raises(ValueError, match="longer than the window"):
            model.forward_block(latents(3), 0.0, text(), cache, start_frame=2, update_cache=False)
    with pytest.raises(ValueError, match="rewind"):
        cache.rewind(5)
    cache.reset()
    assert cache.frames == [] and cache.next_frame is None


@torch.no_grad()
def test_steady_state_attends_to_the_buffer_in_place(model: torch.nn.Module) -> None:
    """Once the window is full, every pass reads the cache as one view of its buffer (no
    concatenation): the keys attended to share the buffer's storage, in every pass."""
    sink, window = 1, 4
    x, prompt = latents(FRAMES), text()
    cache = model.new_cache(sink_frames=sink, window_frames=window)
    seen: list[tuple[int, int]] = []
    attend = cache.attend

    def spy(layer, own):  # type: ignore[no-untyped-def]
        kv = attend(layer, own)
        if layer == 0:
            buffer = cache._keys[0]  # white box: the storage attention must read in place
            assert buffer is not None
            seen.append((kv.key.shape[1], int(kv.key.data_ptr() == buffer.data_ptr())))
        return kv

    cache.attend = spy  # type: ignore[method-assign]
    for s in range(0, FRAMES, BLOCK):
        for level, keep in ((800.0, False), (0.0, True)):
            model.forward_block(
                x[:, :, s : s + BLOCK], level, prompt, cache, start_frame=s, update_cache=keep
            )
    tokens = (x.shape[-1] // 2) * (x.shape[-2] // 2)
    assert all(in_place for _, in_place in seen)
    # Sink + window = 5 frames once full (blocks from frame 4 on: 2 passes each).
    assert [n // tokens for n, _ in seen] == [2, 2, 4, 4, 5, 5, 5, 5, 5, 5]


@torch.no_grad()
def test_a_pass_drops_only_held_frames_that_no_block_can_see(model: torch.nn.Module) -> None:
    """A pass writes its keys into the slots of frames out of the window; such frames (kept
    until now only because a 1-frame block could still see them) leave the cache then."""
    x, prompt = latents(FRAMES), text()
    cache = model.new_cache(sink_frames=1, window_frames=4)
    for s in range(0, 8, BLOCK):
        model.forward_block(
            x[:, :, s : s + BLOCK], 0.0, prompt, cache, start_frame=s, update_cache=True
        )
    assert cache.frames == [0, 5, 6, 7]
    model.forward_block(x[:, :, 8:10], 500.0, prompt, cache, start_frame=8, update_cache=False)
    assert cache.frames == [0, 6, 7]  # frame 5 shared its ring slot with frame 9
    assert cache.next_frame == 8
    with pytest.raises(RuntimeError, match="does not match"):
        cache.commit(6, 2)
