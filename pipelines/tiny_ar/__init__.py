"""`tiny_ar`: a small autoregressive video diffusion model of the persona that runs on a CPU.

Trained by this project on videos rendered by `puppet` (see `train.py`), shipped as safetensors
in `assets/tiny_ar`. This module holds only its config so the registry can list it without
importing torch; `model.py` holds the network and its KV cache, `features.py` the conditioning
vector, `pipeline.py` the streaming Pipeline.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "assets" / "tiny_ar"


class TinyARConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    weights: str = Field(
        default=str(WEIGHTS_DIR),
        description="Directory with config.json and diffusion_pytorch_model.safetensors.",
    )
    display_size: int = Field(
        default=256, ge=32, le=1024, description="Frames are upscaled to this."
    )
    fps: float = Field(default=12.0, gt=0, le=60)
    steps: int = Field(
        default=2,
        ge=1,
        le=8,
        description="Denoising steps per block; a stream whose guided blocks cannot keep the "
        "frame rate takes fewer.",
    )
    expression_guidance: float = Field(
        default=3.0,
        ge=0,
        le=10,
        description="Weight of the push away from a neutral face at the last step (0: off). "
        "Costs one more pass per block while the face is not neutral.",
    )
    seed: int = Field(default=0, ge=0)
    threads: int = Field(default=1, ge=0, description="torch threads; 0 keeps torch's default.")
