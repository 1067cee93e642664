"""The causal Wan transformer is diffusers' WanTransformer3DModel, parameter for parameter.

One cache-less pass over a whole clip must equal diffusers' own forward with the same state
dict: that proves the module tree (strict load, no missing/unexpected keys) and the maths
(modulation, RoPE split, attention, unpatchify). Float32 on CPU; the two implementations order
some float operations differently (RoPE in float32 here, float64 in diffusers; the timestep
sinusoid in float64 here, as Wan computes it, float32 in diffusers), hence atol = rtol = 1e-5
on outputs of magnitude ~1-10.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.wan_tiny import (
    TINY_CONFIG,
    frame_timesteps,
    latents,
    randomize,
    text,
    tiny_model,
)

ATOL = RTOL = 1e-5


@pytest.fixture(scope="module")
def reference() -> torch.nn.Module:
    from diffusers import WanTransformer3DModel

    model = WanTransformer3DModel(**TINY_CONFIG).eval()
    randomize(model, seed=0)
    return model


def _causal_from(reference: torch.nn.Module) -> torch.nn.Module:
    from pipelines.wan.transformer import CausalWanTransformer

    model = CausalWanTransformer.from_config(reference.config).eval()
    result = model.load_state_dict(reference.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return model


def test_state_dict_keys_and_shapes_equal_diffusers(reference: torch.nn.Module) -> None:
    ours = {k: tuple(v.shape) for k, v in tiny_model().state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    assert ours == theirs


@torch.no_grad()
def test_one_timestep_whole_clip_equals_diffusers(reference: torch.nn.Module) -> None:
    model = _causal_from(reference)
    x, prompt = latents(5), text()
    timestep = torch.tensor([731.0])
    expected = reference(x, timestep, prompt, return_dict=False)[0]
    torch.testing.assert_close(model(x, timestep, prompt), expected, atol=ATOL, rtol=RTOL)


@torch.no_grad()
def test_per_frame_timesteps_equal_diffusers_per_token_timesteps(
    reference: torch.nn.Module,
) -> None:
    # diffusers takes a (batch, tokens) timestep (its Wan2.2 TI2V path); a per-frame noise
    # level is that with every token of a frame sharing its frame's timestep.
    model = _causal_from(reference)
    frames, tokens_per_frame = 5, 4
    x, prompt, t = latents(frames, batch=2), text(batch=2), frame_timesteps(frames, batch=2)
    expected = reference(x, t.repeat_interleave(tokens_per_frame, 1), prompt, return_dict=False)[0]
    torch.testing.assert_close(model(x, t, prompt), expected, atol=ATOL, rtol=RTOL)


@torch.no_grad()
def test_from_pretrained_reads_a_saved_diffusers_transformer(
    reference: torch.nn.Module, tmp_path: Path
) -> None:
    from pipelines.wan.transformer import CausalWanTransformer

    reference.save_pretrained(tmp_path)
    model = CausalWanTransformer.from_pretrained(tmp_path).eval()
    x, prompt, t = latents(3), text(), torch.tensor([500.0])
    expected = reference(x, t, prompt, return_dict=False)[0]
    torch.testing.assert_close(model(x, t, prompt), expected, atol=ATOL, rtol=RTOL)


@torch.no_grad()
def test_deterministic_for_a_seed_with_expected_slice() -> None:
    x, prompt, t = latents(3), text(), frame_timesteps(3)
    first = tiny_model(seed=0)(x, t, prompt)
    second = tiny_model(seed=0)(x, t, prompt)
    assert torch.equal(first, second)
    assert first.shape == (1, 4, 3, 4, 4)
    assert not torch.equal(first, tiny_model(seed=1)(x, t, prompt))
    # Recorded from this implementation (torch 2.13 CPU); guards against silent drift.
    expected = torch.tensor([1.8656, 0.1791, 2.4327, 1.2305])
    torch.testing.assert_close(first[0, 0, 2, 0], expected, atol=1e-4, rtol=0)


def test_unsupported_configs_and_bad_timesteps_are_refused() -> None:
    from pipelines.wan.transformer import CausalWanTransformer

    with pytest.raises(NotImplementedError):
        CausalWanTransformer(**{**TINY_CONFIG, "image_dim": 8})
    with pytest.raises(NotImplementedError):
        CausalWanTransformer(**{**TINY_CONFIG, "patch_size": (2, 2, 2)})
    with pytest.raises(ValueError, match="timestep"):
        tiny_model()(latents(3), torch.zeros(1, 2), text())


def test_timestep_sinusoid_is_wans_float64_formula() -> None:
    # Wan's `sinusoidal_embedding_1d` (wan/modules/model.py, as vendored by Self-Forcing and
    # LongLive), written out: t (float64) times 10000^(-k / half), [cos, sin].
    from pipelines.wan.layers import timestep_sinusoid

    dim, half = 256, 128
    timesteps = torch.tensor([[0.0, 250.0, 937.5], [999.0, 1000.0, 3.25]])
    position = timesteps.flatten().to(torch.float64)
    angles = torch.outer(position, torch.pow(10000, -torch.arange(half).to(position).div(half)))
    wan = torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)
    got = timestep_sinusoid(timesteps, dim)
    assert got.dtype == torch.float64 and got.shape == (2, 3, dim)
    assert torch.equal(got.flatten(0, 1), wan)
    # diffusers' float32 version is off by far more than float32 rounding of the result.
    exponent = -torch.log(torch.tensor(10000.0)) * torch.arange(half, dtype=torch.float32) / half
    fp32 = timesteps.flatten()[:, None] * torch.exp(exponent)
    fp32 = torch.cat([torch.cos(fp32), torch.sin(fp32)], dim=1)
    assert (fp32.double() - wan).abs().max() > 1e-5


@torch.no_grad()
def test_compiled_regions_equal_eager_and_compile_once_for_every_layer() -> None:
    # aot_eager traces exactly what Inductor would compile (the real-arithmetic RoPE included)
    # without generating code: fullgraph=True fails on any graph break.
    import torch._dynamo
    from torch._dynamo.utils import counters

    x, prompt = latents(4), text()
    eager, compiled = tiny_model(seed=0), tiny_model(seed=0)
    torch._dynamo.reset()
    counters.clear()
    compiled.compile_blocks(backend="aot_eager", fullgraph=True, dynamic=False)
    outputs = []
    for model in (eager, compiled):
        cache = model.new_cache(sink_frames=1, window_frames=3)
        outputs.append(
            [
                model.forward_block(
                    x[:, :, s : s + 2], level, prompt, cache, start_frame=s, update_cache=True
                )
                for s, level in ((0, 900.0), (2, 0.0))
            ]
        )
    for got, expected in zip(outputs[1], outputs[0], strict=True):
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-6)
    # Two regions, compiled once each and reused by both layers and both blocks.
    assert counters["stats"]["unique_graphs"] == 2
    torch._dynamo.reset()


@torch.no_grad()
def test_attention_kernel_choice_falls_back_where_it_cannot_run() -> None:
    # cuDNN and flash need a GPU: on CPU the same call quietly takes torch's next kernel.
    from pipelines.wan.layers import attention_kernel

    model, x, prompt = tiny_model(), latents(3), text()
    expected = model(x, 500.0, prompt)
    for kernel in ("cudnn", "flash", "efficient", "auto"):
        with attention_kernel(kernel):
            torch.testing.assert_close(model(x, 500.0, prompt), expected, atol=1e-6, rtol=1e-6)
