"""The display figures of issue 19 measure what they say, on frames where the answer is known."""

from __future__ import annotations

import numpy as np

from pipelines.conditioning import Appearance, Character, Conditioning
from pipelines.puppet import PuppetConfig
from pipelines.puppet.pipeline import PuppetPipeline
from pipelines.tiny_ar.display_metrics import card_colours, display_psnr, grid_levels


def _puppet_frames(appearance: Appearance, count: int = 3) -> np.ndarray:
    puppet = PuppetPipeline(PuppetConfig(width=256, height=256))
    puppet.reset(Character(name="Bram", appearance=appearance))
    return np.concatenate([puppet.step([Conditioning(t=i / 30)]) for i in range(count)])


def _patch_grid(frames: np.ndarray, patch: int = 32, depth: float = 20.0) -> np.ndarray:
    """Each patch darkened towards its edges: a blob per patch, as tiny_ar's frames show."""
    y, x = np.mgrid[: frames.shape[1], : frames.shape[2]]
    edge = np.minimum(
        np.minimum(y % patch, patch - 1 - y % patch), np.minimum(x % patch, patch - 1 - x % patch)
    )
    darkening = depth * np.clip(1 - edge / 4, 0, 1)
    return np.clip(frames - darkening[None, :, :, None], 0, 255).astype(np.uint8)


def test_a_frame_is_its_own_perfect_match() -> None:
    frames = _puppet_frames(Appearance())
    assert grid_levels(frames, frames) < 1.0  # flat means flat
    assert display_psnr(frames, frames) > 100
    assert all(e == 0 or e is None for e in card_colours(frames, frames, Appearance()).values())


def test_a_patch_grid_over_flat_areas_is_measured_and_soft_blur_is_not() -> None:
    frames = _puppet_frames(Appearance())
    gridded = _patch_grid(frames.astype(np.float32))
    assert grid_levels(gridded, frames) > 4.0
    blurred = frames.astype(np.float32)
    blurred[:, 1:-1] = (blurred[:, :-2] + blurred[:, 1:-1] + blurred[:, 2:]) / 3  # soft edges
    assert grid_levels(blurred.astype(np.uint8), frames) < 1.0


def test_a_colour_drift_is_found_on_the_card_colour_it_hits() -> None:
    appearance = Appearance(hair="#8a8a8a", top="#2a9d8f")
    frames = _puppet_frames(appearance)
    drifted = frames.copy()
    hair = np.linalg.norm(frames.astype(np.float32) - [138, 138, 138], axis=-1) <= 30
    drifted[hair] = np.clip(drifted[hair].astype(np.int16) + [-40, 30, 0], 0, 255)  # grey -> teal
    errors = card_colours(drifted, frames, appearance)
    assert errors["hair"] is not None and 25 <= errors["hair"] <= 40
    assert errors["top"] == 0 and errors["skin"] == 0
