"""Training videos for `tiny_ar`: random characters acting out random directive scripts.

Each clip is rendered by the `puppet` teacher at the model's size: a random appearance (colours,
hair style, identity seed), a Timeline driven by random actions, expression changes and speech,
a window of frames taken at a random moment of that session, and the character's reference
frame (how `TinyARPipeline.reset` shows the model who it is). Knows nothing about the network.
"""

from __future__ import annotations

import colorsys
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import get_args

import numpy as np

from pipelines.conditioning import (
    ACTIONS,
    EXPRESSIONS,
    Appearance,
    Character,
    Conditioning,
    HairStyle,
    Timeline,
)
from pipelines.puppet.draw import Painter
from pipelines.puppet.pose import pose_for
from pipelines.tiny_ar.features import features_for

STREAM_START_SHARE = 0.15
"""Share of clips that begin at the very start of a stream (empty cache, standing idle)."""


@dataclass(frozen=True)
class Clip:
    reference: np.ndarray  # (1, H, W, 3) uint8
    reference_features: np.ndarray  # (1, FEATURE_SIZE) float32
    frames: np.ndarray  # (L, H, W, 3) uint8
    features: np.ndarray  # (L, FEATURE_SIZE) float32
    conditioning: list[Conditioning]
    character: Character


def _hex(h: float, s: float, v: float) -> str:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"


def random_appearance(rng: random.Random) -> Appearance:
    """Any plausible card: skin from a wide tone range, clothes and hair in any colour."""

    def any_colour() -> str:
        return _hex(rng.random(), rng.uniform(0.2, 0.9), rng.uniform(0.25, 0.95))

    return Appearance(
        description="a randomly drawn training character",
        skin=_hex(rng.uniform(0.02, 0.11), rng.uniform(0.2, 0.6), rng.uniform(0.35, 0.97)),
        hair=any_colour(),
        hair_style=rng.choice(get_args(HairStyle)),
        eyes=any_colour(),
        top=any_colour(),
        bottom=any_colour(),
        shoes=any_colour(),
        accent=any_colour(),
        background=_hex(rng.random(), rng.uniform(0.0, 0.35), rng.uniform(0.7, 0.98)),
        background_far=_hex(rng.random(), rng.uniform(0.0, 0.35), rng.uniform(0.7, 0.98)),
    )


def reference_conditioning() -> Conditioning:
    """The pose of the reference frame: standing, facing front, idle, neutral, at t = 0."""
    return Conditioning()


def _speech(rng: random.Random, until: float) -> list[tuple[float, float, float]]:
    """Random talking spans (start, end, syllables per second)."""
    spans, t = [], rng.uniform(0.0, 3.0)
    while t < until:
        length = rng.uniform(0.5, 4.0)
        spans.append((t, t + length, rng.uniform(3.0, 5.0)))
        t += length + rng.uniform(0.5, 5.0)
    return spans


def _mouth(spans: list[tuple[float, float, float]], t: float) -> float:
    for start, end, rate in spans:
        if start <= t < end:
            return 0.25 + 0.55 * abs(np.sin(np.pi * (t - start) * rate))
    return 0.0


def _random_directive(rng: random.Random, action_share: float) -> tuple[str, str]:
    if rng.random() < action_share:
        return "action", rng.choice(ACTIONS)
    return "expression", rng.choice(EXPRESSIONS)


def random_session(
    rng: random.Random, *, frames: int, fps: float, directive_in_clip: bool = False
) -> tuple[list[Conditioning], Character]:
    """Conditioning for `frames` consecutive frames of a random session, and its character.

    `directive_in_clip` adds one directive (action or expression, even odds) at a random frame
    after the first, so the clip shows the moment the frames in the cache stop being the answer.
    """
    start = 0.0 if rng.random() < STREAM_START_SHARE else rng.uniform(0.0, 20.0)
    end = start + frames / fps
    events: list[tuple[float, str, str]] = []
    t = rng.uniform(0.0, 1.0)
    while t < end:
        events.append((t, *_random_directive(rng, action_share=0.6)))
        t += rng.expovariate(1.0 / 1.5)
    if directive_in_clip:
        events.append((start + rng.randrange(1, frames) / fps, *_random_directive(rng, 0.5)))
        events.sort(key=lambda event: event[0])
    spans = _speech(rng, end)
    timeline = Timeline()
    conditioning: list[Conditioning] = []
    pending = iter(events)
    event = next(pending, None)
    for i in range(frames):
        now = start + i / fps
        while event is not None and event[0] <= now:
            when, kind, label = event
            if kind == "action":
                timeline.set_action(label, when)  # type: ignore[arg-type]
            else:
                timeline.set_expression(label, when)  # type: ignore[arg-type]
            event = next(pending, None)
        conditioning.append(timeline.sample(now, mouth_open=_mouth(spans, now)))
    character = Character(
        name="training", appearance=random_appearance(rng), seed=rng.randrange(2**31)
    )
    return conditioning, character


def render_reference(character: Character, size: tuple[int, int]) -> np.ndarray:
    """The character's reference frame (1, H, W, 3) uint8, as the sink shows it to the model."""
    return render_frames([reference_conditioning()], character, size)


def render_frames(
    conditioning: list[Conditioning], character: Character, size: tuple[int, int]
) -> np.ndarray:
    """The puppet's frames (L, H, W, 3) uint8 of this character under each conditioning."""
    painter = Painter(character.appearance, size[1], size[0])
    return np.stack([painter.render(pose_for(c, seed=character.seed)) for c in conditioning])


def render_clip(
    conditioning: list[Conditioning], character: Character, size: tuple[int, int]
) -> Clip:
    return Clip(
        reference=render_reference(character, size),
        reference_features=features_for([reference_conditioning()]),
        frames=render_frames(conditioning, character, size),
        features=features_for(conditioning),
        conditioning=conditioning,
        character=character,
    )


def directive_pixels(clip: Clip) -> np.ndarray:
    """(L, H, W) bool: where each frame differs from the same moment drawn idle with a neutral
    face, i.e. the pixels that show the directives (training weights its loss there: a face is
    a few dozen pixels here, and plain MSE lets the model copy the old one from its cache)."""
    plain = {
        "action": "idle",
        "previous_action": "idle",
        "expression": "neutral",
        "previous_expression": "neutral",
    }
    idle = render_frames(
        [c.model_copy(update=plain) for c in clip.conditioning],
        clip.character,
        clip.frames.shape[1:3],
    )
    return (idle != clip.frames).any(-1)


def random_clips(
    seed: int, *, frames: int, fps: float, size: tuple[int, int], directive_share: float = 0.0
) -> Iterator[Clip]:
    """An endless, reproducible stream of random clips; `directive_share` of them receive a
    directive inside the clip (see `random_session`)."""
    rng = random.Random(seed)
    while True:
        forced = directive_share > 0 and rng.random() < directive_share
        conditioning, character = random_session(
            rng, frames=frames, fps=fps, directive_in_clip=forced
        )
        yield render_clip(conditioning, character, size)
