"""The `tiny_ar` Pipeline: the trained model streamed block by block behind the Pipeline API.

1. `reset` renders the character's reference frame (the puppet's idle pose in the card's
   colours) and writes it into a fresh KV cache as the identity sink.
2. each `step` turns its conditioning into feature vectors, denoises one block of frames in a
   few steps against the cache, writes it back (the t=0 pass), and upscales for display.
Deterministic for a config seed and character seed, as long as guided blocks keep to their
time budget (a stream that cannot afford them steps down, and says so in the log).
"""

from __future__ import annotations

import logging
import statistics
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
"""Share of its screen time that a guided block may take (median of GUIDED_BLOCKS_MEASURED).
Guidance is what makes faces read, but the frame rate comes first. A stream whose guided blocks
run slower first takes one denoising step fewer per block (1 step instead of 2 measured the same
responsiveness, 0.8 dB less free-running PSNR); only when a single step still does not fit does
it turn guidance off. Either lasts until the next reset, so faces never flicker between
guided and plain."""
GUIDED_BLOCKS_IGNORED = 6
"""The first guided blocks of a stream are left out of the budget: they come right after the
chat message that changed the face, while the server and the page are busy answering it
(measured in the app on 2 cores: 180-270 ms, against 100-160 ms a second later)."""
GUIDED_BLOCKS_MEASURED = 6
"""Guided blocks behind each decision, by their median (one slow moment does not decide)."""


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
        self._start_budget()

    def reset(self, character: Character) -> None:
        model = self._require_model()
        reference = render_reference(character, (model.config.height, model.config.width))
        features = torch.from_numpy(features_for([reference_conditioning()]))[None]
        with torch.inference_mode():
            self._cache = model.start_stream(to_unit(reference)[None], features)
        self._frame = 0
        self._generator.manual_seed(self.config.seed * 1_000_003 + character.seed)
        self._start_budget()

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
            steps=self.steps,
            generator=self._generator,
            expression_guidance=self.expression_guidance,
        )[0]
        if guided:
            self._keep_guided_blocks_in_budget(time.perf_counter() - started, len(conditioning))
        self._frame += len(conditioning)
        display = F.interpolate(
            block, size=(self.spec.height, self.spec.width), mode="bilinear", align_corners=False
        )
        return to_pixels(display).numpy()

    def _start_budget(self) -> None:
        """Every stream starts with the configured steps and guidance (see GUIDANCE_BUDGET)."""
        self.steps = self.config.steps
        self.expression_guidance = self.config.expression_guidance
        self._guided_blocks = 0
        self._guided_seconds: list[float] = []

    def _keep_guided_blocks_in_budget(self, seconds: float, frames: int) -> None:
        """Account one guided block of `frames` frames that took `seconds` (see GUIDANCE_BUDGET)."""
        self._guided_blocks += 1
        if self._guided_blocks <= GUIDED_BLOCKS_IGNORED:
            return
        self._guided_seconds.append(seconds)
        if len(self._guided_seconds) < GUIDED_BLOCKS_MEASURED:
            return
        typical = statistics.median(self._guided_seconds)
        self._guided_seconds = []
        budget = GUIDANCE_BUDGET * frames / self.config.fps
        if typical <= budget:
            return
        if self.steps > 1:
            self.steps -= 1
            change = f"{self.steps} denoising step(s) per block"
        else:
            self.expression_guidance = 0.0
            change = "expression guidance off"
        log.warning(
            "%s for this stream: guided blocks take %.0f ms, the frame rate allows %.0f ms",
            change,
            1000 * typical,
            1000 * budget,
        )

    def close(self) -> None:
        self.model = None
        self._cache = None

    def _require_model(self) -> TinyARTransformer:
        if self.model is None:
            raise RuntimeError("TinyARPipeline used after close()")
        return self.model
