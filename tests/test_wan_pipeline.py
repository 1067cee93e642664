"""The `wan` Pipeline end to end at tiny size on CPU, and its registry entry.

Tiny random parts built here (no hub): the 2-layer transformer of `wan_tiny`, a 2-layer umT5
encoder of width 8 with a word-level tokenizer, and a ~0.2 M-parameter AutoencoderKLWan (or the
TAEHV-style tiny decoder), on 4x4 latents = 32x32 frames.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipelines.conditioning import Character, Conditioning
from pipelines.registry import PipelineUnavailableError, build_pipeline, list_pipelines
from pipelines.wan import WanConfig, weights_missing

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from pipelines.wan.pipeline import WanPipeline, block_prompt_mix  # noqa: E402
from pipelines.wan.text import WanTextEncoder, prompt_for  # noqa: E402
from tests.wan_tiny import LATENT_SIZE, TINY_CONFIG, tiny_model, tiny_umt5, word_tokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SIZE = 8 * LATENT_SIZE
CHUNK = 12  # 4 video frames per latent frame, 3 latent frames per block
ALICE = Character(name="Alice", seed=7)
TEXT_TOKENS = 64
"""Long enough to reach the action phrase (the appearance comes first)."""


def _tokenizer():  # type: ignore[no-untyped-def]
    words = [
        "a",
        "friendly",
        "young",
        "person",
        "standing",
        "waving",
        "jumping",
        "smiling",
        "happily",
        "sad",
    ]
    return word_tokenizer(words)


@pytest.fixture(scope="module")
def umt5():  # type: ignore[no-untyped-def]
    model = tiny_umt5(vocab_size=16, d_model=int(TINY_CONFIG["text_dim"]), d_ff=16)
    return model, _tokenizer()


@pytest.fixture(scope="module")
def vae():  # type: ignore[no-untyped-def]
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    return AutoencoderKLWan(
        base_dim=8,
        z_dim=4,
        dim_mult=[1, 2, 2, 2],
        num_res_blocks=1,
        latents_mean=[0.1, -0.2, 0.3, 0.0],
        latents_std=[1.5, 0.5, 2.0, 1.0],
    ).eval()


def _pipeline(umt5, vae, *, tiny_decoder: bool = False, **options) -> WanPipeline:  # type: ignore[no-untyped-def]
    from pipelines.wan.tiny_vae import StreamingTinyDecoder, TinyWanDecoder
    from pipelines.wan.vae import StreamingWanDecoder

    if tiny_decoder:
        torch.manual_seed(0)
        decoder = StreamingTinyDecoder(TinyWanDecoder(latent_channels=4, widths=(8, 8, 8, 8)))
    else:
        decoder = StreamingWanDecoder(vae)
    config = WanConfig(height=SIZE, width=SIZE, device="cpu", dtype="float32", **options)
    return WanPipeline(
        config,
        transformer=tiny_model(),
        text_encoder=WanTextEncoder(*umt5, max_length=TEXT_TOKENS),
        decoder=decoder,
    )


def _chunk(action: str = "idle", expression: str = "neutral", **fields) -> list[Conditioning]:  # type: ignore[no-untyped-def]
    return [Conditioning(action=action, expression=expression, **fields)] * CHUNK


def _stream(pipeline: WanPipeline, chunks: list[list[Conditioning]]) -> list[np.ndarray]:
    pipeline.reset(ALICE)
    return [pipeline.step(chunk) for chunk in chunks]


def test_runs_end_to_end_through_the_pipeline_interface(umt5, vae) -> None:  # type: ignore[no-untyped-def]
    pipeline = _pipeline(umt5, vae)
    assert pipeline.spec.chunk_frames == CHUNK
    assert (pipeline.spec.width, pipeline.spec.height, pipeline.spec.fps) == (SIZE, SIZE, 16.0)
    assert pipeline.spec.device == "cpu" and pipeline.spec.memory_mb > 0
    frames = _stream(pipeline, [_chunk()] * 3)
    for chunk in frames:
        assert chunk.shape == (CHUNK, SIZE, SIZE, 3) and chunk.dtype == np.uint8
    # The first block decodes to 1 + 4 * 2 = 9 frames; its first frame is held for 3 more.
    first = frames[0]
    assert all(np.array_equal(first[i], first[0]) for i in range(4))
    assert not np.array_equal(first[3], first[4])
    assert not np.array_equal(frames[1][0], frames[1][1])  # later chunks: no holding
    assert pipeline.cache is not None and pipeline.cache.frames[-1] == 8  # 3 blocks of 3


def test_the_tiny_decoder_fits_the_same_interface(umt5, vae) -> None:  # type: ignore[no-untyped-def]
    frames = _stream(_pipeline(umt5, vae, tiny_decoder=True), [_chunk()] * 2)
    assert [f.shape for f in frames] == [(CHUNK, SIZE, SIZE, 3)] * 2


def test_deterministic_for_a_seed(umt5, vae) -> None:  # type: ignore[no-untyped-def]
    chunks = [_chunk(), _chunk("wave", "happy")]
    pipeline = _pipeline(umt5, vae)
    first = _stream(pipeline, chunks)
    again = _stream(pipeline, chunks)  # reset restarts the same stream
    other = _stream(_pipeline(umt5, vae), chunks)
    for a, b, c in zip(first, again, other, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    reseeded = _stream(_pipeline(umt5, vae, seed=1), chunks)
    assert not np.array_equal(first[1], reseeded[1])


def test_a_prompt_switch_recaches_the_recent_frames_and_keeps_going(umt5, vae) -> None:  # type: ignore[no-untyped-def]
    pipeline = _pipeline(umt5, vae)
    transformer = pipeline.transformer
    assert transformer is not None
    seen: list[tuple[torch.Tensor, torch.Tensor, list[int], list[int]]] = []
    recache = transformer.recache

    def spy(clean, text, cache, *, start_frame, block_frames):  # type: ignore[no-untyped-def]
        # The last layer's keys: the first layer's come before any cross-attention.
        end, last = cache.next_frame, cache.num_layers - 1
        before = cache.visible(last, end, end + block_frames).key.clone()
        frames_before = list(cache.frames)
        recache(clean, text, cache, start_frame=start_frame, block_frames=block_frames)
        after = cache.visible(last, end, end + block_frames).key.clone()
        seen.append((before, after, frames_before, list(cache.frames)))

    transformer.recache = spy  # type: ignore[method-assign]
    idle = [_chunk()] * 3
    _stream(pipeline, idle)
    assert pipeline.recaches == 0 and not seen  # same prompt: no re-cache

    switched = _stream(pipeline, [*idle, _chunk("jump"), _chunk("jump")])
    assert pipeline.recaches == 1 and len(seen) == 1
    before, after, frames_before, frames_after = seen[0]
    assert frames_after == frames_before == list(range(9))  # sink 0-2, window 3-8
    sink = 3 * (LATENT_SIZE // 2) ** 2  # tokens of the 3 sink frames
    assert before.shape == after.shape
    assert torch.equal(before[:, :sink], after[:, :sink])  # the sink is kept ...
    assert not torch.equal(before[:, sink:], after[:, sink:])  # ... the window re-encoded
    assert [f.shape for f in switched] == [(CHUNK, SIZE, SIZE, 3)] * 5
    plain = _stream(_pipeline(umt5, vae), [*idle, _chunk("jump"), _chunk("jump")])
    np.testing.assert_array_equal(switched[2], plain[2])  # identical up to the switch
    assert pipeline.cache is not None and pipeline.cache.frames[-1] == 14


def test_recache_can_be_turned_off(umt5, vae) -> None:  # type: ignore[no-untyped-def]
    pipeline = _pipeline(umt5, vae, recache=False)
    _stream(pipeline, [_chunk(), _chunk("jump")])
    assert pipeline.recaches == 0


def test_a_block_shows_the_average_prompt_mix_of_its_frames() -> None:
    look = ALICE.appearance
    steady = [Conditioning(action="wave")] * 4
    assert block_prompt_mix(look, steady) == ((prompt_for(look, "wave", "neutral"), 1.0),)
    blend = [
        Conditioning(action="wave", previous_action="idle", action_blend=b)
        for b in (0.0, 0.25, 0.5, 1.0)
    ]
    assert (
        block_prompt_mix(look, blend)
        == (
            (prompt_for(look, "wave", "neutral"), 0.438),
            (prompt_for(look, "idle", "neutral"), 0.562),
        )[::-1]
    )


def test_bad_use_is_refused_clearly(umt5, vae) -> None:  # type: ignore[no-untyped-def]
    pipeline = _pipeline(umt5, vae)
    with pytest.raises(RuntimeError, match="before reset"):
        pipeline.step(_chunk())
    pipeline.reset(ALICE)
    with pytest.raises(ValueError, match="needs 12 conditionings"):
        pipeline.step(_chunk()[:5])
    with pytest.raises(ValueError, match="together"):
        WanPipeline(WanConfig(device="cpu"), transformer=tiny_model())
    with pytest.raises(ValueError, match="multiples of 16"):
        WanConfig(height=40)
    pipeline.close()
    with pytest.raises(RuntimeError, match="after close"):
        pipeline.reset(ALICE)


def test_missing_weights_offline_fail_fast_with_the_fix(monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from huggingface_hub import constants

    from pipelines.wan.loading import WeightsUnavailable

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    reason = weights_missing()
    assert reason is not None and "HF_HUB_OFFLINE=1" in reason
    assert "Efficient-Large-Model/LongLive-1.3B/models/lora.pt" in reason
    assert "Self-Forcing" in (weights_missing(WanConfig(checkpoint="self_forcing")) or "")
    with pytest.raises(WeightsUnavailable, match="hf download"):
        WanPipeline.from_pretrained(WanConfig(device="cpu"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    assert weights_missing() is None  # online, they are downloaded when built


def test_registry_lists_wan_as_unavailable_here_and_refuses_to_build() -> None:
    from pipelines.registry import needs_cuda

    reason = needs_cuda()
    if reason is None:
        pytest.skip("this machine has a CUDA GPU")
    status = {s.name: s for s in list_pipelines()}["wan"]
    assert not status.available and status.reason == reason
    assert "Wan2.1" in status.description
    with pytest.raises(PipelineUnavailableError, match="cannot run here: needs a CUDA GPU"):
        build_pipeline("wan")
    with pytest.raises(ValueError, match="bad config"):
        build_pipeline("wan", checkpoint="nope")


def test_listing_and_the_config_import_no_torch() -> None:
    code = (
        "import sys, pipelines.wan, pipelines.registry; "
        "pipelines.registry.list_pipelines(); print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    has_gpu_driver = any(Path(p).exists() for p in ("/proc/driver/nvidia/version", "/dev/kfd"))
    assert out.stdout.strip() == str(has_gpu_driver)
