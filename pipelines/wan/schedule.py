"""The few-step flow-matching schedule of Self-Forcing / LongLive, as pure arithmetic.

Knows the published denoising list (1000, 750, 500, 250), the shift warp that maps it onto
the timesteps the distilled model was trained on, and how to re-noise a clean prediction to
the next level. Deliberately knows nothing about tensors' library: the re-noise works on any
values supporting `*` and `+` (floats, numpy arrays, torch tensors).
"""

from __future__ import annotations

from typing import TypeVar

PUBLISHED_DENOISING_STEPS: tuple[int, ...] = (1000, 750, 500, 250)
PUBLISHED_SHIFT = 5.0
NUM_TRAIN_TIMESTEPS = 1000

Value = TypeVar("Value")


def shift_sigma(sigma: float, *, shift: float) -> float:
    """Warp a noise level in [0, 1] towards the noisy end: shift * s / (1 + (shift - 1) * s)."""
    if not 0.0 <= sigma <= 1.0:
        raise ValueError(f"sigma must lie in [0, 1], got {sigma}")
    if shift <= 0.0:
        raise ValueError(f"shift must be positive, got {shift}")
    return shift * sigma / (1.0 + (shift - 1.0) * sigma)


def warped_timesteps(
    steps: tuple[int, ...] = PUBLISHED_DENOISING_STEPS,
    *,
    shift: float = PUBLISHED_SHIFT,
    num_train_timesteps: int = NUM_TRAIN_TIMESTEPS,
) -> list[float]:
    """Timesteps the sampler runs at: each listed step read off the shifted training grid.

    The grid has `num_train_timesteps` levels from sigma 1 down (sigma 0 excluded), so step
    `k` sits at sigma `k / num_train_timesteps` before the shift.
    """
    if not steps:
        raise ValueError("the denoising step list is empty")
    for step in steps:
        if not 0 < step <= num_train_timesteps:
            raise ValueError(f"denoising step {step} outside (0, {num_train_timesteps}]")
    return [
        shift_sigma(step / num_train_timesteps, shift=shift) * num_train_timesteps for step in steps
    ]


def renoise(clean: Value, noise: Value, *, timestep: float) -> Value:
    """Flow-matching forward process: (1 - sigma) * clean + sigma * noise at `timestep`."""
    sigma = timestep / NUM_TRAIN_TIMESTEPS
    if not 0.0 <= sigma <= 1.0:
        raise ValueError(f"timestep must lie in [0, {NUM_TRAIN_TIMESTEPS}], got {timestep}")
    return clean * (1.0 - sigma) + noise * sigma  # type: ignore[operator]
