"""The interface every video pipeline implements.

A pipeline is a chunk generator: `reset` gives it a character (and clears whatever state it
carries across chunks, such as a KV cache), then each `step` takes one `Conditioning` per frame
of the next chunk and returns that chunk's frames. A procedural renderer and a block-causal
diffusion model fit the same shape: the renderer draws each frame from its conditioning, the
diffusion model denoises a block of latent frames against its cache and decodes it.

This module knows nothing about threads, pacing, browsers or the persona layer: the stream
runner (`pipelines.stream`) drives pipelines in real time, and the app wires the rest.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pipelines.conditioning import Character, Conditioning


class PipelineGone(RuntimeError):
    """A pipeline that cannot step again (its remote worker died, taking its state): the
    stream runner ends the stream with this message instead of retrying."""


class PipelineSpec(BaseModel):
    """What a pipeline instance produces and needs, declared before it runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    chunk_frames: int = Field(ge=1, description="Frames returned by one step.")
    fps: float = Field(gt=0, description="Frame rate the frames are meant to be shown at.")
    width: int = Field(ge=8)
    height: int = Field(ge=8)
    device: str = Field(default="cpu", description='"cpu" or a torch device such as "cuda".')
    memory_mb: float = Field(default=0.0, ge=0, description="Estimated peak memory it needs.")


class Pipeline(ABC):
    """A video pipeline stepped chunk by chunk. Subclasses are built by the registry."""

    spec: PipelineSpec

    @abstractmethod
    def reset(self, character: Character) -> None:
        """Start a new stream of `character`, dropping all state carried across chunks."""

    @abstractmethod
    def step(self, conditioning: Sequence[Conditioning]) -> np.ndarray:
        """Render the next chunk.

        `conditioning` has exactly `spec.chunk_frames` entries, one per frame in time order.
        Returns uint8 RGB frames shaped (chunk_frames, height, width, 3).
        Raises ValueError with a clear message for conditioning it cannot use.
        """

    def close(self) -> None:
        """Free memory held by the pipeline (models, caches). Safe to call twice."""

    def _check_conditioning(self, conditioning: Sequence[Conditioning]) -> None:
        """Shared validation for `step`: right count, right type."""
        if len(conditioning) != self.spec.chunk_frames:
            raise ValueError(
                f"{type(self).__name__}.step needs {self.spec.chunk_frames} conditionings "
                f"(one per frame), got {len(conditioning)}"
            )
        for c in conditioning:
            if not isinstance(c, Conditioning):
                raise ValueError(
                    f"expected pipelines.conditioning.Conditioning, got {type(c).__name__}"
                )
