"""The `puppet` Pipeline: pose each frame from its conditioning, then paint it.

Stateless across chunks except for the painter (which caches the character's background), so
`reset` only swaps the character. Deterministic: the same character, seed and conditioning give
the same pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipelines.base import Pipeline, PipelineSpec
from pipelines.conditioning import Character, Conditioning
from pipelines.puppet import PuppetConfig
from pipelines.puppet.draw import Painter
from pipelines.puppet.pose import pose_for


class PuppetPipeline(Pipeline):
    def __init__(self, config: PuppetConfig | None = None, **options: object) -> None:
        self.config = config or PuppetConfig(**options)
        c = self.config
        frame_bytes = c.width * c.height * 4
        self.spec = PipelineSpec(
            chunk_frames=c.chunk_frames,
            fps=c.fps,
            width=c.width,
            height=c.height,
            device="cpu",
            memory_mb=round(8 * frame_bytes / 2**20, 1),
        )
        self._painter: Painter | None = None
        self._seed = 0

    def reset(self, character: Character) -> None:
        self._painter = Painter(character.appearance, self.config.width, self.config.height)
        self._seed = character.seed

    def step(self, conditioning: Sequence[Conditioning]) -> np.ndarray:
        if self._painter is None:
            raise RuntimeError("PuppetPipeline.step called before reset(character)")
        self._check_conditioning(conditioning)
        return np.stack([self._painter.render(pose_for(c, seed=self._seed)) for c in conditioning])

    def close(self) -> None:
        self._painter = None
