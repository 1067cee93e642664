"""A tiny streaming decoder for Wan2.1 latents in the TAEHV style, for cheap live decoding.

The full Wan VAE decoder costs about as much as a diffusion step at 832x480; a tiny decoder
of 2-D convolutions with one frame of memory per block (TAEHV by madebyollin, `taew2_1`,
~11 M parameters) trades a little quality for a large speed-up. This is our own small
implementation of that architecture: the decoder is a flat `nn.Sequential` laid out block for
block like TAEHV's, so its `decoder.N.*` parameter names match the published checkpoints and
`TinyWanDecoder.from_taehv_file` loads them directly (encoder weights in the file are ignored).
It is also a diffusers `ModelMixin`, so `save_pretrained`/`from_pretrained` use safetensors.

Decoding works on the latents the diffusion model predicts (TAEHV learned the normalised
latent space, so no mean/std is undone here) and streams through `StreamingTinyDecoder`, which
has the same `reset`/`decode_chunk` interface as `vae.StreamingWanDecoder`. It knows nothing
about encoding video, prompts or the transformer.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

LATENT_CLAMP = 3.0
"""Latents are soft-clamped to about +-3 (tanh) before decoding, as TAEHV does."""


def _conv3x3(n_in: int, n_out: int, *, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, bias=bias)


class SoftClamp(nn.Module):
    """tanh(x / c) * c: keeps outlier latents from blowing up the small decoder."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / LATENT_CLAMP) * LATENT_CLAMP


class MemoryBlock(nn.Module):
    """A residual block that also sees its own input from the previous frame (its memory)."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            _conv3x3(n_in * 2, n_out),
            nn.ReLU(),
            _conv3x3(n_out, n_out),
            nn.ReLU(),
            _conv3x3(n_out, n_out),
        )
        self.skip = nn.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor, past: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(torch.cat([x, past], 1)) + self.skip(x))


class TimeGrow(nn.Module):
    """Turns each frame into `stride` frames: a 1x1 conv to stride x channels, split in time."""

    def __init__(self, channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(channels, channels * stride, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, c, h, w = x.shape
        return self.conv(x).reshape(-1, c, h, w)  # frame-major: (frame, sub-frame) order


class TinyWanDecoder(ModelMixin, ConfigMixin):
    """The decoder network. Stateless: the per-block memory lives in `StreamingTinyDecoder`."""

    @register_to_config
    def __init__(
        self,
        latent_channels: int = 16,
        image_channels: int = 3,
        widths: tuple[int, ...] = (256, 128, 64, 64),
        blocks_per_stage: int = 3,
        time_upscale: tuple[bool, ...] = (False, True, True),
        space_upscale: tuple[bool, ...] = (True, True, True),
    ) -> None:
        super().__init__()
        stages = len(widths) - 1
        if len(time_upscale) != stages or len(space_upscale) != stages:
            raise ValueError(f"time_upscale and space_upscale need {stages} entries each")
        layers: list[nn.Module] = [SoftClamp(), _conv3x3(latent_channels, widths[0]), nn.ReLU()]
        for stage in range(stages):
            width, next_width = widths[stage], widths[stage + 1]
            layers += [MemoryBlock(width, width) for _ in range(blocks_per_stage)]
            layers += [
                nn.Upsample(scale_factor=2 if space_upscale[stage] else 1),
                TimeGrow(width, 2 if time_upscale[stage] else 1),
                _conv3x3(width, next_width, bias=False),
            ]
        layers += [nn.ReLU(), _conv3x3(widths[-1], image_channels)]
        self.decoder = nn.Sequential(*layers)
        self.time_upscale_factor = 2 ** sum(bool(t) for t in time_upscale)
        self.space_upscale_factor = 2 ** sum(bool(s) for s in space_upscale)

    def forward(self, latents: torch.Tensor, memory: list[torch.Tensor | None]) -> torch.Tensor:
        """Latent frames (N, T, C, h, w) -> raw frames (N, T * t_up, 3, H, W), about [0, 1].

        `memory[i]` holds block i's input from the last frame seen (None at stream start, read
        as zeros); it is updated in place, so consecutive calls continue one video. Frames in
        one call run in parallel: each block's "past" is its own input shifted by one frame.
        """
        if len(memory) != len(self.decoder):
            raise ValueError(f"memory needs {len(self.decoder)} slots, got {len(memory)}")
        n, t = latents.shape[:2]
        x = latents.reshape(n * t, *latents.shape[2:])
        for i, layer in enumerate(self.decoder):
            if isinstance(layer, MemoryBlock):
                frames = x.reshape(n, t, *x.shape[1:])
                previous = memory[i]
                if previous is None:
                    previous = torch.zeros_like(frames[:, :1])
                past = torch.cat([previous, frames[:, :-1]], dim=1).reshape(x.shape)
                memory[i] = frames[:, -1:]
                x = layer(x, past)
            else:
                x = layer(x)
                if isinstance(layer, TimeGrow):
                    t *= layer.stride
        return x.reshape(n, t, *x.shape[1:])

    @classmethod
    def from_taehv_file(cls, path: str | Path, **config: object) -> TinyWanDecoder:
        """Load a TAEHV checkpoint (`taew2_1.safetensors` or `.pth`); `config` overrides defaults.

        A checkpoint trained with time upscaling in a stage that `config` turns off still loads:
        that stage's TimeGrow keeps only the channels of the last sub-frame, as TAEHV does for
        its cheaper preview modes.
        """
        path = Path(path)
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
        model = cls(**config)
        own = model.state_dict()
        decoder_state = {k: v for k, v in state.items() if k.startswith("decoder.")}
        for i, layer in enumerate(model.decoder):
            key = f"decoder.{i}.conv.weight"
            if isinstance(layer, TimeGrow) and key in decoder_state:
                wanted = own[key].shape[0]
                if decoder_state[key].shape[0] > wanted:
                    decoder_state[key] = decoder_state[key][-wanted:]
        model.load_state_dict(decoder_state, strict=True)
        return model.eval()

    @classmethod
    def from_hub(
        cls,
        *,
        local_dir: str | Path | None = None,
        offline: bool | None = None,
        cache_dir: str | Path | None = None,
        **config: object,
    ) -> TinyWanDecoder:
        """The published `taew2_1` weights, from the hub cache (or `local_dir`).

        Raises `loading.WeightsUnavailable` with the fix when they are not to be had.
        """
        from pipelines.wan.loading import TINY_DECODER, fetch_files

        paths = fetch_files(TINY_DECODER, local_dir=local_dir, offline=offline, cache_dir=cache_dir)
        return cls.from_taehv_file(paths[TINY_DECODER.files[0]], **config)


class StreamingTinyDecoder:
    """Streams latent chunks through a `TinyWanDecoder`, same interface as StreamingWanDecoder.

    The first `time_upscale_factor - 1` frames the network produces are start-up frames with no
    counterpart in Wan's 1 + 4k layout and are dropped, so frame counts match the full VAE.
    """

    def __init__(self, model: TinyWanDecoder) -> None:
        self.model = model
        self._memory: list[torch.Tensor | None] = []
        self.latent_frames_decoded = 0
        self.reset()

    def reset(self) -> None:
        self._memory = [None] * len(self.model.decoder)
        self.latent_frames_decoded = 0

    @torch.no_grad()
    def decode_chunk(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents (B, C, F, h, w) -> pixels (B, 3, F', H, W) in [-1, 1]."""
        channels = self.model.config.latent_channels
        if latents.ndim != 5 or latents.shape[1] != channels:
            raise ValueError(
                f"expected latents shaped (batch, {channels}, frames, h, w), "
                f"got {tuple(latents.shape)}"
            )
        first = self.latent_frames_decoded == 0
        frames = self.model(latents.transpose(1, 2).to(self.model.dtype), self._memory)
        self.latent_frames_decoded += latents.shape[2]
        if first and latents.shape[2] > 0:
            frames = frames[:, self.model.time_upscale_factor - 1 :]
        return frames.clamp(0.0, 1.0).mul(2.0).sub(1.0).transpose(1, 2)
