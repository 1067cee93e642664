"""The `wan` Pipeline: streaming Wan2.1 (Self-Forcing / LongLive recipe) behind the Pipeline API.

1. `reset` starts a stream: a fresh KV cache (attention sink + rolling window), a fresh
   streaming decoder, the character's appearance remembered, the noise generator seeded.
2. each `step` is one block of `block_frames` latent frames: the chunk's conditioning becomes a
   weighted prompt mix, which is encoded (cached per prompt); when it differs from the previous
   block's, the recent clean frames are re-encoded under the new prompt (LongLive's KV
   re-cache) so motion continues while content follows. The block is denoised in a few steps
   (flow prediction -> x0 -> re-noise to the next warped timestep), written into the cache by
   one more pass at t=0, decoded with the causal state carried across blocks, and returned as
   uint8 frames.

Frames per step. One block of F latent frames decodes to 4F video frames, except the first
block of a stream: Wan's VAE gives its first latent frame a single image (the 1 + 4k layout),
so it decodes to 4F - 3. The pipeline declares `chunk_frames = 4F` (12 at the default 3) and
fills the first chunk by holding the stream's first frame for the 3 missing frames (0.19 s at
16 fps); every later chunk is exactly what the decoder produced.

On CUDA the constructor compiles the transformer's per-token work (`WanConfig.compile`) and
runs one throwaway stream, so that compilation and cuDNN's plan choices happen while the
pipeline is built, not in the first user's stream.

Components are injected (`transformer`, `text_encoder`, `decoder`); `from_pretrained` (or the
constructor given none of them) fetches and loads the published weights (`loading.py`). This
module knows the recipe, not the models' maths, the weight layouts or where files live.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from pipelines.base import Pipeline, PipelineSpec
from pipelines.conditioning import Appearance, Character, Conditioning
from pipelines.wan import LATENT_SCALE, WAN_1_3B, WanConfig
from pipelines.wan.layers import attention_kernel
from pipelines.wan.schedule import NUM_TRAIN_TIMESTEPS, renoise, warped_timesteps
from pipelines.wan.text import WanTextEncoder, prompt_mix
from pipelines.wan.transformer import CausalWanTransformer
from pipelines.wan.vae import TEMPORAL_UPSCALE, StreamingDecoder, to_uint8_frames

if TYPE_CHECKING:
    from pipelines.wan.cache import WanKVCache

log = logging.getLogger(__name__)

MIX_DECIMALS = 3
"""Prompt weights are rounded to this many decimals: equal rounded mixes are the same prompt."""
WARM_UP_BLOCKS = 4
"""Idle blocks of the build-time warm-up stream: enough to fill the default 12-frame window,
so the warm-up meets every attention shape a stream will (then one prompt switch)."""
WARM_UP_CHARACTER = Character(name="warm-up")
SEED_STRIDE = 1_000_003
"""Config seed and character seed combine as seed * SEED_STRIDE + character.seed."""


def block_prompt_mix(
    appearance: Appearance, conditioning: Sequence[Conditioning]
) -> tuple[tuple[str, float], ...]:
    """The prompts one block shows and their weights: each frame's `prompt_mix`, averaged.

    A block has one text conditioning, so a blend that runs through the chunk is represented by
    its average. Weights are rounded (MIX_DECIMALS), renormalised, heaviest first.
    """
    if not conditioning:
        raise ValueError("a block needs at least one frame of conditioning")
    totals: dict[str, float] = {}
    for frame in conditioning:
        for prompt, weight in prompt_mix(appearance, frame):
            totals[prompt] = totals.get(prompt, 0.0) + weight / len(conditioning)
    kept = {p: round(w, MIX_DECIMALS) for p, w in totals.items() if round(w, MIX_DECIMALS) > 0}
    total = sum(kept.values())
    ordered = sorted(kept.items(), key=lambda item: -item[1])
    return tuple((p, round(w / total, MIX_DECIMALS)) for p, w in ordered)


class WanPipeline(Pipeline):
    """Block-causal, KV-cached Wan2.1 text-to-video, one block of latent frames per step."""

    def __init__(
        self,
        config: WanConfig | None = None,
        *,
        transformer: CausalWanTransformer | None = None,
        text_encoder: WanTextEncoder | None = None,
        decoder: StreamingDecoder | None = None,
        **options: object,
    ) -> None:
        self.config = config or WanConfig(**options)  # type: ignore[arg-type]
        parts = (transformer, text_encoder, decoder)
        if all(part is None for part in parts):
            transformer, text_encoder, decoder = load_components(self.config)
        elif any(part is None for part in parts):
            raise ValueError("pass transformer, text_encoder and decoder together, or none of them")
        assert transformer is not None and text_encoder is not None and decoder is not None
        self.transformer: CausalWanTransformer | None = transformer.eval()
        self.text_encoder = text_encoder
        self.decoder = decoder
        parameter = next(self.transformer.parameters())
        self.device, self.dtype = parameter.device, parameter.dtype
        self.timesteps = warped_timesteps(self.config.denoising_steps, shift=self.config.shift)
        self.spec = PipelineSpec(
            chunk_frames=TEMPORAL_UPSCALE * self.config.block_frames,
            fps=self.config.fps,
            width=self.config.width,
            height=self.config.height,
            device=str(self.device),
            memory_mb=round(self._memory_estimate_mb(), 1),
        )
        self.recaches = 0
        """How many times a prompt change re-encoded the recent frames (for logs and tests)."""
        self.cache: WanKVCache | None = None
        self._appearance: Appearance | None = None
        self._generator = torch.Generator(device=self.device)
        self._frame = 0
        self._recent: torch.Tensor | None = None
        self._text_key: tuple[tuple[str, float], ...] | None = None
        self._text: torch.Tensor | None = None
        self.compiled = (
            self.config.compile if self.config.compile is not None else self.device.type == "cuda"
        )
        if self.compiled:
            self.transformer.compile_blocks()
        if self.device.type == "cuda":
            self._warm_up()

    @classmethod
    def from_pretrained(cls, config: WanConfig | None = None, **options: object) -> WanPipeline:
        """Fetch (HF cache, honouring HF_HUB_OFFLINE) and load the weights `config` names."""
        config = config or WanConfig(**options)  # type: ignore[arg-type]
        transformer, text_encoder, decoder = load_components(config)
        return cls(config, transformer=transformer, text_encoder=text_encoder, decoder=decoder)

    def reset(self, character: Character) -> None:
        transformer = self._require_transformer()
        self.cache = transformer.new_cache(
            sink_frames=self.config.sink_frames, window_frames=self.config.window_frames
        )
        self.decoder.reset()
        self._appearance = character.appearance
        self._generator.manual_seed(self.config.seed * SEED_STRIDE + character.seed)
        self._frame = 0
        self._recent = None
        self._text_key = self._text = None

    @torch.inference_mode()
    def step(self, conditioning: Sequence[Conditioning]) -> np.ndarray:
        if self.cache is None or self._appearance is None:
            raise RuntimeError("WanPipeline.step called before reset(character)")
        self._check_conditioning(conditioning)
        with attention_kernel(self.config.attention):
            return self._step(conditioning)

    def _step(self, conditioning: Sequence[Conditioning]) -> np.ndarray:
        transformer = self._require_transformer()
        assert self.cache is not None and self._appearance is not None
        cache, start = self.cache, self._frame

        # 1. The block's prompt mix, from every frame's action and expression (and blends).
        mix = block_prompt_mix(self._appearance, conditioning)
        # 2. Its umT5 embeddings: cached per prompt; an unchanged mix reuses the same tensor,
        #    so the transformer keeps its cross-attention K/V.
        changed = mix != self._text_key
        if changed:
            self._text = self.text_encoder.mix(mix).to(device=self.device, dtype=self.dtype)
            self._text_key = mix
        text = self._text
        assert text is not None
        # 3. A new prompt mid-stream: LongLive's KV re-cache of the recent clean frames.
        if changed and self._recent is not None and self.config.recache:
            self._recache(text)
        # 4. Few-step denoising: predict flow, x0 = x - sigma * flow, re-noise to the next step.
        x = self._noise()
        x0 = x
        for i, t in enumerate(self.timesteps):
            flow = transformer.forward_block(
                x, t, text, cache, start_frame=start, update_cache=False
            )
            x0 = (x.float() - (t / NUM_TRAIN_TIMESTEPS) * flow.float()).to(self.dtype)
            if i + 1 < len(self.timesteps):
                x = renoise(x0, self._noise(), timestep=self.timesteps[i + 1])
        # 5. One more pass at t=0 on the clean block writes it into the KV cache.
        transformer.forward_block(x0, 0.0, text, cache, start_frame=start, update_cache=True)
        self._frame += self.config.block_frames
        self._remember(x0)
        # 6. Decode, carrying the decoder's causal state across blocks.
        frames = to_uint8_frames(self.decoder.decode_chunk(x0))
        # 7. The stream's first block is 3 frames short (1 + 4k layout): hold its first frame.
        return self._fill(frames, first=start == 0)

    def close(self) -> None:
        self.transformer = None
        self.cache = None
        self._recent = self._text = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    # -- the recipe's parts ------------------------------------------------------------------

    def _noise(self) -> torch.Tensor:
        transformer = self._require_transformer()
        shape = (
            1,
            transformer.config.in_channels,
            self.config.block_frames,
            self.config.height // LATENT_SCALE,
            self.config.width // LATENT_SCALE,
        )
        return torch.randn(shape, generator=self._generator, device=self.device, dtype=self.dtype)

    def _recache(self, text: torch.Tensor) -> None:
        """Re-encode the recent frames the next block will see (outside the sink) at t=0."""
        assert self._recent is not None and self.cache is not None
        frames = min(self._recent.shape[2], self.config.window_frames - self.config.block_frames)
        if frames == 0:
            return  # the window holds only the block itself: the new prompt is all it needs
        self._require_transformer().recache(
            self._recent[:, :, -frames:],
            text,
            self.cache,
            start_frame=self._frame - frames,
            block_frames=self.config.block_frames,
        )
        self.recaches += 1
        log.debug("re-cached %d frames before frame %d under a new prompt", frames, self._frame)

    def _warm_up(self) -> None:
        """A throwaway stream while the pipeline is built, so no user's stream pays start-up.

        It compiles the transformer (with `compile`), lets cuDNN choose its plans for every
        shape a stream meets (the decoder's first and later chunks, attention over a growing
        cache, a re-cache after a prompt switch) and fills the allocator's pools. Then the
        pipeline is as before, except warm.
        """
        idle = [Conditioning()] * self.spec.chunk_frames
        switch = [Conditioning(action="wave")] * self.spec.chunk_frames
        self.reset(WARM_UP_CHARACTER)
        for chunk in [idle] * WARM_UP_BLOCKS + [switch]:
            self.step(chunk)
        self.cache, self._appearance, self._recent = None, None, None
        self.recaches = 0
        self.decoder.reset()

    def _remember(self, clean: torch.Tensor) -> None:
        """Keep the last `window_frames` clean latent frames for a re-cache."""
        recent = clean if self._recent is None else torch.cat([self._recent, clean], dim=2)
        self._recent = recent[:, :, -self.config.window_frames :]

    def _fill(self, frames: np.ndarray, *, first: bool) -> np.ndarray:
        missing = self.spec.chunk_frames - frames.shape[0]
        if missing > 0 and first:
            frames = np.concatenate([np.repeat(frames[:1], missing, axis=0), frames])
        if frames.shape != (self.spec.chunk_frames, self.spec.height, self.spec.width, 3):
            raise RuntimeError(
                f"the decoder gave frames shaped {frames.shape}; expected "
                f"({self.spec.chunk_frames}, {self.spec.height}, {self.spec.width}, 3): "
                "check that the decoder's upscaling matches the config's size"
            )
        return frames

    def _memory_estimate_mb(self) -> float:
        """Weights of every component plus the KV cache, doubled for activations (estimate)."""
        transformer = self._require_transformer()
        modules = [
            transformer,
            getattr(self.text_encoder, "text_encoder", None),
            getattr(self.decoder, "vae", None) or getattr(self.decoder, "model", None),
        ]
        weights = sum(
            p.numel() * p.element_size()
            for module in modules
            if isinstance(module, torch.nn.Module)
            for p in module.parameters()
        )
        c = transformer.config
        _, p_h, p_w = c.patch_size
        tokens = (self.config.height // LATENT_SCALE // p_h) * (
            self.config.width // LATENT_SCALE // p_w
        )
        frames = self.config.sink_frames + self.config.window_frames
        element = next(transformer.parameters()).element_size()
        kv = 2 * c.num_layers * frames * tokens * c.num_attention_heads * c.attention_head_dim
        return (weights + 2 * kv * element) / 2**20

    def _require_transformer(self) -> CausalWanTransformer:
        if self.transformer is None:
            raise RuntimeError("WanPipeline used after close()")
        return self.transformer


# -- building from published weights ----------------------------------------------------------


def load_components(
    config: WanConfig,
) -> tuple[CausalWanTransformer, WanTextEncoder, StreamingDecoder]:
    """Fetch and load the transformer, text encoder and decoder that `config` names.

    Every file is fetched (or found in the cache) before any model is built, so missing
    weights fail fast with `loading.WeightsUnavailable`, which says what to download.
    """
    from pipelines.wan import loading

    device, dtype = torch.device(config.device), getattr(torch, config.dtype)
    parts = ("text_encoder", "tokenizer") + (() if config.use_tiny_decoder else ("vae",))
    base = loading.fetch_wan_base(config.base, parts=parts)
    if config.checkpoint == "diffusers":
        checkpoint = loading.fetch_wan_base(config.transformer_source, parts=("transformer",))
        files: dict[str, object] = {"transformer": checkpoint / "transformer"}
    else:
        published = loading.LONGLIVE if config.checkpoint == "longlive" else loading.SELF_FORCING
        files = dict(loading.fetch_files(published, local_dir=config.transformer_source))
    tiny = None
    if config.use_tiny_decoder:
        from pipelines.wan.tiny_vae import TinyWanDecoder

        tiny = TinyWanDecoder.from_hub(local_dir=config.tiny_decoder_source)

    transformer = _load_transformer(config, files, device, dtype)
    text_encoder = WanTextEncoder.from_pretrained(base, device=str(device), dtype=dtype)
    decoder: StreamingDecoder
    if tiny is not None:
        from pipelines.wan.tiny_vae import StreamingTinyDecoder

        decoder = StreamingTinyDecoder(tiny.to(device=device, dtype=dtype).eval())
    else:
        from pipelines.wan.vae import StreamingWanDecoder

        decoder = StreamingWanDecoder.from_pretrained(base, device=str(device), dtype=dtype)
    return transformer, text_encoder, decoder


def _load_transformer(
    config: WanConfig, files: dict[str, object], device: torch.device, dtype: torch.dtype
) -> CausalWanTransformer:
    from pipelines.wan.weights import load_wan_weights

    if config.checkpoint == "diffusers":
        model = CausalWanTransformer.from_pretrained(files["transformer"], torch_dtype=dtype)
        return model.to(device).eval()
    names = list(files)
    with device:
        model = CausalWanTransformer(**WAN_1_3B)  # type: ignore[arg-type]
    state = torch.load(files[names[0]], map_location="cpu", weights_only=True)
    lora = None
    if config.checkpoint == "longlive":
        lora = torch.load(files[names[1]], map_location="cpu", weights_only=True)
    # Self-Forcing's file holds only `generator_ema`; LongLive's config runs `use_ema: false`.
    load_wan_weights(model, state, use_ema=config.checkpoint == "self_forcing", lora=lora)
    return model.to(dtype=dtype).eval()
