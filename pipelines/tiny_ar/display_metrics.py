"""How tiny_ar's frames look at display size, against the puppet's frames of the same moments.

Three figures a visitor would notice before any other (issue 19), on uint8 RGB frames
(N, H, W, 3) at the size the page shows:

- `display_psnr`: the picture as a whole.
- `grid_levels`: patch structure where the teacher's picture is flat. Local detail is a frame
  minus its Gaussian blur (sigma DETAIL_SIGMA px, in grey levels); "flat" is where the
  teacher's own detail stays under FLAT_LEVELS everywhere within a blur's reach, so edges the
  model draws a pixel off are not counted. The RMS of the model's detail there is what a patch
  grid or speckle adds to a plain background, shirt or face.
- `card_colours`: for each of the card's colours (hair, skin, top, bottom), the pixels where the
  teacher draws that colour (within COLOUR_MATCH, COLOUR_MARGIN px inside its edges), and how
  far the model's mean colour there is from the teacher's (the largest channel difference, in
  levels).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from pipelines.conditioning import Appearance, hex_rgb

DETAIL_SIGMA = 4.0
"""Blur (px at display size) whose residue counts as local detail: one pixel of tiny_ar's
64x64 frame at the 256x256 display, so the upscaling's own softness is not counted."""
FLAT_LEVELS = 1.0
"""Teacher detail (grey levels) under which its picture counts as flat."""
COLOUR_MATCH = 30.0
"""RGB distance within which a teacher pixel shows a card colour (the puppet shades a little)."""
COLOUR_MARGIN = 3
"""Pixels at most this far from where the teacher's colour ends are not compared."""
CARD_COLOURS = ("hair", "skin", "top", "bottom")


def _grey(frames: np.ndarray) -> torch.Tensor:
    """(N, 1, H, W) float grey levels of uint8 RGB frames (N, H, W, 3)."""
    return torch.from_numpy(frames.astype(np.float32).mean(-1))[:, None]


def _kernel_radius() -> int:
    return int(3 * DETAIL_SIGMA)


def local_detail(frames: np.ndarray) -> torch.Tensor:
    """|frame - its Gaussian blur| in grey levels, (N, 1, H, W)."""
    grey = _grey(frames)
    r = _kernel_radius()
    g = torch.exp(-(torch.arange(-r, r + 1, dtype=torch.float32) ** 2) / (2 * DETAIL_SIGMA**2))
    g = g / g.sum()
    padded = F.pad(grey, (r, r, r, r), mode="replicate")
    blurred = F.conv2d(F.conv2d(padded, g.view(1, 1, 1, -1)), g.view(1, 1, -1, 1))
    return (grey - blurred).abs()


def _near_an_edge(teacher_detail: torch.Tensor, threshold: float) -> torch.Tensor:
    """Pixels within a blur's reach of teacher detail above `threshold`."""
    r = _kernel_radius()
    return F.max_pool2d(teacher_detail, 2 * r + 1, stride=1, padding=r) >= threshold


def grid_levels(frames: np.ndarray, teacher: np.ndarray) -> float:
    """RMS local detail of `frames` where `teacher` (same moments) is flat, in grey levels."""
    flat = ~_near_an_edge(local_detail(teacher), FLAT_LEVELS)
    if not flat.any():
        return 0.0
    return float(local_detail(frames)[flat].pow(2).mean().sqrt())


def display_psnr(frames: np.ndarray, teacher: np.ndarray) -> float:
    mse = float(np.mean((frames.astype(np.float64) - teacher.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / max(mse, 1e-12))


def card_colours(
    frames: np.ndarray, teacher: np.ndarray, appearance: Appearance
) -> dict[str, float | None]:
    """Per card colour, the largest channel difference (levels) between the model's and the
    teacher's mean colour over the pixels where the teacher shows it (None: not in view)."""
    errors: dict[str, float | None] = {}
    for field in CARD_COLOURS:
        target = np.array(hex_rgb(getattr(appearance, field)), np.float32)
        distance = np.linalg.norm(teacher.astype(np.float32) - target, axis=-1)
        elsewhere = torch.from_numpy(distance > COLOUR_MATCH).float()[:, None]
        margin = 2 * COLOUR_MARGIN + 1
        near_elsewhere = F.max_pool2d(elsewhere, margin, stride=1, padding=COLOUR_MARGIN)
        shown = (near_elsewhere[:, 0] == 0).numpy()
        if shown.sum() < 20:
            errors[field] = None
            continue
        difference = frames[shown].mean(0, dtype=np.float64) - teacher[shown].mean(
            0, dtype=np.float64
        )
        errors[field] = round(float(np.abs(difference).max()), 1)
    return errors
