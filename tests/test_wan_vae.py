"""Streaming decode of Wan latents: chunk by chunk equals one shot, for the full and tiny VAE.

Tiny random models built here (no hub): a ~0.2 M-parameter AutoencoderKLWan and a TAEHV-style
decoder with 8 channels, on 4x6 latents.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from pipelines.wan.tiny_vae import StreamingTinyDecoder, TinyWanDecoder  # noqa: E402
from pipelines.wan.vae import StreamingWanDecoder, pixel_frames, to_uint8_frames  # noqa: E402

Z_DIM = 4
CHUNKINGS = [(1, 3, 3), (3, 3, 3), (2, 1, 4)]


def _chunks(latents: torch.Tensor, sizes: tuple[int, ...]) -> list[torch.Tensor]:
    return list(torch.split(latents, list(sizes), dim=2))


@pytest.fixture(scope="module")
def vae():  # type: ignore[no-untyped-def]
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    return AutoencoderKLWan(
        base_dim=8,
        z_dim=Z_DIM,
        dim_mult=[1, 2, 2, 2],
        num_res_blocks=1,
        latents_mean=[0.1, -0.2, 0.3, 0.0],
        latents_std=[1.5, 0.5, 2.0, 1.0],
    ).eval()


@pytest.mark.parametrize("sizes", CHUNKINGS, ids=str)
def test_chunked_decode_equals_one_shot_diffusers_decode(vae, sizes) -> None:  # type: ignore[no-untyped-def]
    latents = torch.randn(1, Z_DIM, sum(sizes), 4, 6, generator=torch.Generator().manual_seed(1))
    stream = StreamingWanDecoder(vae)
    parts = [stream.decode_chunk(chunk) for chunk in _chunks(latents, sizes)]

    with torch.no_grad():
        reference = vae.decode(stream.denormalize(latents)).sample
    assert [p.shape[2] for p in parts] == [
        pixel_frames(n, first_chunk=i == 0) for i, n in enumerate(sizes)
    ]
    streamed = torch.cat(parts, dim=2)
    assert streamed.shape == reference.shape == (1, 3, 1 + 4 * (sum(sizes) - 1), 32, 48)
    torch.testing.assert_close(streamed, reference, atol=1e-6, rtol=0)


def test_decoding_each_chunk_afresh_would_differ(vae) -> None:  # type: ignore[no-untyped-def]
    """The cache carried across calls matters: diffusers' own per-call decode restarts."""
    latents = torch.randn(1, Z_DIM, 4, 4, 6, generator=torch.Generator().manual_seed(2))
    stream = StreamingWanDecoder(vae)
    stream.decode_chunk(latents[:, :, :1])
    second = stream.decode_chunk(latents[:, :, 1:])
    with torch.no_grad():
        afresh = vae.decode(stream.denormalize(latents[:, :, 1:])).sample
    assert second.shape[2] == 12 and afresh.shape[2] == 9
    assert not torch.allclose(second[:, :, -9:], afresh, atol=1e-3)


def test_reset_starts_a_new_video(vae) -> None:  # type: ignore[no-untyped-def]
    latents = torch.randn(1, Z_DIM, 3, 4, 6, generator=torch.Generator().manual_seed(3))
    stream = StreamingWanDecoder(vae)
    first = stream.decode_chunk(latents)
    stream.decode_chunk(latents)
    stream.reset()
    again = stream.decode_chunk(latents)
    assert stream.latent_frames_decoded == 3
    torch.testing.assert_close(first, again, atol=0, rtol=0)


def test_denormalize_matches_wan_pipeline_convention(vae) -> None:  # type: ignore[no-untyped-def]
    # WanPipeline: latents / (1 / std) + mean.
    latents = torch.ones(1, Z_DIM, 1, 1, 1)
    out = StreamingWanDecoder(vae).denormalize(latents).flatten().tolist()
    assert out == pytest.approx([1.5 + 0.1, 0.5 - 0.2, 2.0 + 0.3, 1.0])


def test_wrong_latent_shape_is_refused(vae) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="latents shaped"):
        StreamingWanDecoder(vae).decode_chunk(torch.zeros(1, Z_DIM + 1, 1, 4, 6))


def test_to_uint8_frames_layout() -> None:
    pixels = torch.zeros(1, 3, 2, 4, 5)
    pixels[:, 0] = 1.0  # red channel full
    pixels[:, 2] = -1.0
    frames = to_uint8_frames(pixels)
    assert frames.shape == (2, 4, 5, 3) and frames.dtype == np.uint8
    assert frames[0, 0, 0].tolist() == [255, 128, 0]


# --- the tiny decoder ---------------------------------------------------------------------


def _tiny(seed: int = 0) -> TinyWanDecoder:
    torch.manual_seed(seed)
    model = TinyWanDecoder(latent_channels=Z_DIM, widths=(8, 8, 8, 8)).eval()
    with torch.no_grad():  # random init leaves outputs near 0: spread them so clamps bite less
        model.decoder[-1].bias.fill_(0.5)
    return model


@pytest.mark.parametrize("sizes", CHUNKINGS, ids=str)
def test_tiny_decoder_chunked_equals_one_shot(sizes) -> None:  # type: ignore[no-untyped-def]
    model = _tiny()
    latents = torch.randn(1, Z_DIM, sum(sizes), 4, 6, generator=torch.Generator().manual_seed(4))
    one_shot = StreamingTinyDecoder(model).decode_chunk(latents)
    stream = StreamingTinyDecoder(model)
    parts = [stream.decode_chunk(chunk) for chunk in _chunks(latents, sizes)]
    assert [p.shape[2] for p in parts] == [
        pixel_frames(n, first_chunk=i == 0) for i, n in enumerate(sizes)
    ]
    assert one_shot.shape == (1, 3, 1 + 4 * (sum(sizes) - 1), 32, 48)
    torch.testing.assert_close(torch.cat(parts, dim=2), one_shot, atol=1e-6, rtol=0)
    assert one_shot.min() >= -1.0 and one_shot.max() <= 1.0 and one_shot.std() > 0


def test_tiny_decoder_memory_links_frames() -> None:
    """A frame's output depends on the previous latent frame (the memory), not only its own."""
    model = _tiny()
    latents = torch.randn(1, Z_DIM, 3, 4, 6, generator=torch.Generator().manual_seed(5))
    changed = latents.clone()
    changed[:, :, 1] += 1.0
    a = StreamingTinyDecoder(model).decode_chunk(latents)
    b = StreamingTinyDecoder(model).decode_chunk(changed)
    torch.testing.assert_close(a[:, :, :1], b[:, :, :1])  # before the change: untouched
    assert not torch.allclose(a[:, :, -4:], b[:, :, -4:])  # after it: the memory carries it


def test_tiny_decoder_save_and_load_pretrained(tmp_path: Path) -> None:
    model = _tiny(seed=1)
    model.save_pretrained(tmp_path / "tiny")
    assert (tmp_path / "tiny" / "diffusion_pytorch_model.safetensors").exists()
    loaded = TinyWanDecoder.from_pretrained(tmp_path / "tiny").eval()
    latents = torch.randn(1, Z_DIM, 2, 4, 6, generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(
        StreamingTinyDecoder(loaded).decode_chunk(latents),
        StreamingTinyDecoder(model).decode_chunk(latents),
        atol=0,
        rtol=0,
    )


def test_tiny_decoder_loads_a_taehv_style_checkpoint(tmp_path: Path) -> None:
    """TAEHV files hold encoder.* and decoder.* keys; a stride-2 TimeGrow may feed a stride-1."""
    from safetensors.torch import save_file

    source = _tiny(seed=2)
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    state["encoder.0.weight"] = torch.zeros(2, 2, 3, 3)
    grow_key = "decoder.7.conv.weight"  # stage 0's TimeGrow (TAEHV layout), stride 1 here
    assert state[grow_key].shape[0] == 8
    state[grow_key] = torch.cat([torch.randn_like(state[grow_key]), state[grow_key]])
    save_file(state, str(tmp_path / "taew.safetensors"))

    loaded = TinyWanDecoder.from_taehv_file(
        tmp_path / "taew.safetensors",
        latent_channels=Z_DIM,
        widths=(8, 8, 8, 8),
    )
    for key, value in source.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, atol=0, rtol=0)


def test_tiny_decoder_from_hub_offline_says_where_to_get_it(tmp_path: Path) -> None:
    from pipelines.wan.loading import WeightsUnavailable

    with pytest.raises(WeightsUnavailable, match="hf download Kijai/WanVideo_comfy taew2_1"):
        TinyWanDecoder.from_hub(offline=True, cache_dir=tmp_path)


def test_tiny_decoder_from_a_local_directory(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    source = _tiny(seed=3)
    save_file(source.state_dict(), str(tmp_path / "taew2_1.safetensors"))
    loaded = TinyWanDecoder.from_hub(local_dir=tmp_path, latent_channels=Z_DIM, widths=(8, 8, 8, 8))
    torch.testing.assert_close(loaded.decoder[1].weight, source.decoder[1].weight)


def test_full_vae_from_a_wan_directory(vae, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    vae.save_pretrained(tmp_path / "vae")
    stream = StreamingWanDecoder.from_pretrained(tmp_path)
    latents = torch.randn(1, Z_DIM, 2, 4, 6, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(
        stream.decode_chunk(latents), StreamingWanDecoder(vae).decode_chunk(latents)
    )


def test_channels_last_weights_decode_the_same(vae) -> None:  # type: ignore[no-untyped-def]
    """The CUDA layout (channels-last 3-D convolutions) changes no pixel beyond float
    rounding; checked here on CPU on a copy of the VAE."""
    import copy

    latents = torch.randn(1, Z_DIM, 4, 4, 6, generator=torch.Generator().manual_seed(3))
    plain = StreamingWanDecoder(vae, channels_last=False)
    fast = StreamingWanDecoder(copy.deepcopy(vae), channels_last=True)
    assert not plain.channels_last and fast.channels_last
    conv = next(m for m in fast.vae.modules() if isinstance(m, torch.nn.Conv3d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last_3d)
    for chunk in _chunks(latents, (1, 3)):
        torch.testing.assert_close(
            fast.decode_chunk(chunk), plain.decode_chunk(chunk), atol=1e-5, rtol=0
        )
