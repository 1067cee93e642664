"""`puppet`: a procedural 2D character rendered in real time on one CPU core.

The embedded default pipeline (no GPU, no weights) and the teacher that renders training videos
for learned pipelines. This module holds only its config so the registry can list it without
importing the drawing library; `pipeline.py` holds the Pipeline, `pose.py` the pure pose maths
and `draw.py` the skia painter.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class PuppetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    width: int = Field(default=512, ge=32, le=2048)
    height: int = Field(default=512, ge=32, le=2048)
    fps: float = Field(default=30.0, gt=0, le=120)
    chunk_frames: int = Field(default=1, ge=1, le=32)
