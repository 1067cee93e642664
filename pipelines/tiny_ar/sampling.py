"""Few-step sampling of one block against the cache: the loop every caller shares.

The pipeline, the training rollouts and the quality command all generate through
`generate_block`, so there is one sampler and it cannot drift between them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from pipelines.tiny_ar.features import EXPRESSION_SLICE, NEUTRAL_FEATURE, shows_expression
from pipelines.tiny_ar.model import TinyARCache, TinyARTransformer

GUIDANCE_GATE = 0.05
"""Expression guidance is applied in full where the two predictions differ by at least this much
on average over 5x5 pixels, and fades out below: a changed mouth or eyes pass, while isolated
speckle around the head (which plain guidance amplified into a halo) mostly does not. Measured:
the same expressions recognised, a fainter halo; at 0.1 half the expressions were lost."""
SCHEDULE_SHIFT = 2.0
"""Warp of the uniform noise-level grid towards the noisy end (as flow-matching video models
do); tuned for 64x64 pixels, where fine detail appears late."""


def sigmas_for(steps: int) -> list[float]:
    """Noise levels of a `steps`-step sampler, from 1 (pure noise) down, excluding 0."""
    levels = [1.0 - i / steps for i in range(steps)]
    return [SCHEDULE_SHIFT * s / (1.0 + (SCHEDULE_SHIFT - 1.0) * s) for s in levels]


@torch.no_grad()
def generate_block(
    model: TinyARTransformer,
    cache: TinyARCache,
    features: Tensor,
    first_frame: int,
    *,
    steps: int,
    generator: torch.Generator | None = None,
    commit: bool = True,
    expression_guidance: float = 0.0,
) -> Tensor:
    """Denoise one block (B, F, C, H, W) in [-1, 1] and write it into the cache.

    1. start from noise; 2. at each level predict x0 and re-noise it to the next level with
    fresh noise; 3. rerun the final x0 at level 0 to write the block into the KV cache (skipped
    with commit=False, for callers that cache something else, such as the true frames).
    While the face is not neutral, the last level also predicts x0 with a neutral face, and the
    block returned is pushed away from it by `expression_guidance` where the two differ over a
    region (GUIDANCE_GATE): guidance against a negative condition, since a face is a few pixels
    here and this is what makes expressions read. The cache still gets the unguided x0: fed
    back, the exaggeration compounded into colour drift.
    """
    b, f = features.shape[:2]
    c, h, w = model.config.channels, model.config.height, model.config.width
    shape = (b, f, c, h, w)
    device = features.device

    def noise() -> Tensor:
        return torch.randn(shape, generator=generator, device=device)

    sigmas = sigmas_for(steps)
    guided = expression_guidance > 0 and shows_expression(features)
    x = noise()
    for i, sigma in enumerate(sigmas):
        level = torch.full((b, f), sigma, device=device)
        x0 = model.denoise_block(x, level, features, cache, first_frame)
        if i + 1 < len(sigmas):
            x = (1.0 - sigmas[i + 1]) * x0.clamp(-1.0, 1.0) + sigmas[i + 1] * noise()
    shown = x0
    if guided:
        neutral = features.clone()
        neutral[..., EXPRESSION_SLICE] = 0.0
        neutral[..., NEUTRAL_FEATURE] = 1.0
        plain = model.denoise_block(x, level, neutral, cache, first_frame)
        difference = x0 - plain
        spread = F.avg_pool2d(difference.abs().mean(2).flatten(0, 1), 5, 1, 2).view(b, f, 1, h, w)
        shown = x0 + expression_guidance * difference * (spread / GUIDANCE_GATE).clamp(max=1.0)
    if commit:
        model.commit_block(x0.clamp(-1.0, 1.0), features, cache, first_frame)
    return shown.clamp(-1.0, 1.0)
