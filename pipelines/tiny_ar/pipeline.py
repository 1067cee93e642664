"""The `tiny_ar` Pipeline: the trained model streamed block by block behind the Pipeline API.

1. `reset` renders the character's reference frame (the puppet's idle pose in the card's
   colours) and writes it into a fresh KV cache as the identity sink.
2. each `step` turns its conditioning into feature vectors, denoises one block of frames in a
   few steps against the cache, writes it back (the t=0 pass), and upscales for display.
Deterministic for a config seed and character seed, as long as expression guidance keeps to
its time budget (a stream that cannot afford it turns it off, once, and says so in the log).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from pipelines.base import Pipeline, PipelineSpec
from pipelines.conditioning import Character, Conditioning
from pipelines.tiny_ar import TinyARConfig
from pipelines.tiny_ar.data import reference_conditioning, render_reference
from pipelines.tiny_ar.features import features_for, shows_expression
from pipelines.tiny_ar.model import TinyARCache, TinyARTransformer
from pipelines.tiny_ar.sampling import generate_block

log = logging.getLogger(__name__)

GUIDANCE_BUDGET = 0.95
"""Share of a block's screen time that a guided step may take on average. Guidance is what
makes faces read, but the frame rate comes first: a stream whose guided steps run slower turns
guidance off until the next reset (once, rather than flickering the faces on and off)."""
GUIDED_STEPS_MEASURED = 6
"""Guided steps averaged before that decision."""


def to_pixels(frames: torch.Tensor) -> torch.Tensor:
    """(…, 3, H, W) in [-1, 1] -> uint8 (…, H, W, 3)."""
    return ((frames.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).movedim(-3, -1)


def to_unit(frames: np.ndarray) -> torch.Tensor:
    """uint8 (…, H, W, 3) -> float (…, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(frames).movedim(-1, -3).float() / 127.5 - 1.0


class TinyARPipeline(Pipeline):
    def __init__(self, config: TinyARConfig | None = None, **options: object) -> None:
        self.config = config or TinyARConfig(**options)
        torch.set_flush_denormal(True)  # denormals make CPU matmuls several times slower
        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        self.model: TinyARTransformer | None = TinyARTransformer.from_pretrained(
            self.config.weights, torch_dtype=torch.float32
        ).eval()
        m = self.model.config
        size = self.config.display_size
        params = sum(p.numel() for p in self.model.parameters())
        self.spec = PipelineSpec(
            chunk_frames=m.block_frames,
            fps=self.config.fps,
            width=size,
            height=size * m.height // m.width,
            device="cpu",
            memory_mb=round(4 * params / 2**20 + 64, 1),
        )
        self._cache: TinyARCache | None = None
        self._frame = 0
        self._generator = torch.Generator()
        self.expression_guidance = self.config.expression_guidance
        self._guided_seconds: list[float] = []

    def reset(self, character: Character) -> None:
        model = self._require_model()
        reference = render_reference(character, (model.config.height, model.config.width))
        features = torch.from_numpy(features_for([reference_conditioning()]))[None]
        with torch.inference_mode():
            self._cache = model.start_stream(to_unit(reference)[None], features)
        self._frame = 0
        self._generator.manual_seed(self.config.seed * 1_000_003 + character.seed)
        self.expression_guidance, self._guided_seconds = self.config.expression_guidance, []

    @torch.inference_mode()
    def step(self, conditioning: Sequence[Conditioning]) -> np.ndarray:
        model = self._require_model()
        if self._cache is None:
            raise RuntimeError("TinyARPipeline.step called before reset(character)")
        self._check_conditioning(conditioning)
        features = torch.from_numpy(features_for(conditioning))[None]
        guided = self.expression_guidance > 0 and shows_expression(features)
        started = time.perf_counter()
        block = generate_block(
            model,
            self._cache,
            features,
            self._frame,
            steps=self.config.steps,
            generator=self._generator,
            expression_guidance=self.expression_guidance,
        )[0]
        if guided:
            self._keep_guidance_in_budget(time.perf_counter() - started, len(conditioning))
        self._frame += len(conditioning)
        display = F.interpolate(
            block, size=(self.spec.height, self.spec.width), mode="bilinear", align_corners=False
        )
        return to_pixels(display).numpy()

    def _keep_guidance_in_budget(self, seconds: float, frames: int) -> None:
        self._guided_seconds.append(seconds)
        if len(self._guided_seconds) < GUIDED_STEPS_MEASURED:
            return
        average = sum(self._guided_seconds) / len(self._guided_seconds)
        budget = GUIDANCE_BUDGET * frames / self.config.fps
        if average > budget:
            log.warning(
                "expression guidance off for this stream: guided blocks take %.0f ms, "
                "the frame rate allows %.0f ms",
                1000 * average,
                1000 * budget,
            )
            self.expression_guidance = 0.0
        self._guided_seconds = []

    def close(self) -> None:
        self.model = None
        self._cache = None

    def _require_model(self) -> TinyARTransformer:
        if self.model is None:
            raise RuntimeError("TinyARPipeline used after close()")
        return self.model
