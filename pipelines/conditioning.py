"""The conditioning vocabulary: what any pipeline can be asked to render.

This module is type-only (pydantic and the standard library): the persona layer imports it to
speak the pipelines' language, so it must stay free of torch, numpy and every pipeline. It knows
the names of actions and expressions, how each kind of action behaves over time, what a
character looks like, and the per-frame `Conditioning` a pipeline receives. It knows nothing
about how anything is drawn or generated.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

Action = Literal[
    "idle",
    "wave",
    "nod",
    "shake_head",
    "bow",
    "point",
    "thumbs_up",
    "clap",
    "shrug",
    "jump",
    "dance",
    "sit_down",
    "stand_up",
    "turn_around",
    "look_left",
    "look_right",
    "think",
    "cross_arms",
]
Expression = Literal[
    "neutral",
    "happy",
    "laughing",
    "sad",
    "angry",
    "surprised",
    "confused",
    "thinking",
    "shy",
    "wink",
    "scared",
    "sleepy",
]
ACTIONS: tuple[str, ...] = get_args(Action)
EXPRESSIONS: tuple[str, ...] = get_args(Expression)

# How each action behaves over time (DESIGN.md section 2).
HOLDS: frozenset[str] = frozenset({"dance", "think", "cross_arms"})
"""Played until the next action replaces them."""
POSTURE_CHANGES: frozenset[str] = frozenset({"sit_down", "stand_up"})
"""Played once; the posture they reach persists."""
FACING_TOGGLES: frozenset[str] = frozenset({"turn_around"})
"""Played once; flips which way the character faces, which persists."""
GESTURES: frozenset[str] = frozenset(ACTIONS) - HOLDS - POSTURE_CHANGES - FACING_TOGGLES - {"idle"}
"""Played once, then the character returns to idle."""

ACTION_SECONDS: dict[str, float] = {
    "wave": 1.8,
    "nod": 1.2,
    "shake_head": 1.4,
    "bow": 1.8,
    "point": 1.6,
    "thumbs_up": 1.6,
    "clap": 1.8,
    "shrug": 1.4,
    "jump": 1.2,
    "look_left": 1.6,
    "look_right": 1.6,
    "sit_down": 1.2,
    "stand_up": 1.2,
    "turn_around": 1.0,
}
"""How long a one-shot action takes, in seconds (holds have no end)."""

BLEND_SECONDS = 0.25
"""How long a change of action or expression cross-fades, so poses never pop."""

Posture = Literal["standing", "sitting"]
Facing = Literal["front", "back"]

_HEX = r"^#[0-9a-fA-F]{6}$"
HairStyle = Literal["short", "long", "bob", "ponytail", "curly", "spiky", "bun", "bald"]


class Appearance(BaseModel):
    """What a character looks like, for renderers (colours) and text-conditioned models (prose).

    Stored in a character card under `data.extensions["persona/appearance"]`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = Field(
        default="a friendly young person with short brown hair in a teal sweater",
        max_length=500,
        description="Prose used as the identity part of a text prompt.",
    )
    skin: str = Field(default="#e8b894", pattern=_HEX)
    hair: str = Field(default="#4a2f1f", pattern=_HEX)
    hair_style: HairStyle = "short"
    eyes: str = Field(default="#3b6ea5", pattern=_HEX)
    top: str = Field(default="#2a9d8f", pattern=_HEX)
    bottom: str = Field(default="#264653", pattern=_HEX)
    shoes: str = Field(default="#3d3d3d", pattern=_HEX)
    accent: str = Field(default="#e9c46a", pattern=_HEX)
    background: str = Field(default="#f1e9da", pattern=_HEX)
    background_far: str = Field(default="#cfe3e8", pattern=_HEX)


class Character(BaseModel):
    """The identity a pipeline is reset with: stays the same for the whole session."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=100)
    appearance: Appearance = Appearance()
    seed: int = Field(default=0, ge=0, lt=2**31)


class Conditioning(BaseModel):
    """What one frame should show, sampled from the character state at that frame's time.

    Every transition carries its own blend weight so renderers can cross-fade and generative
    models can interpolate prompts: `*_blend` is the weight of the current value against the
    previous one (0 = all previous, 1 = all current).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    t: float = Field(default=0.0, ge=0.0, description="Stream time of this frame, seconds.")
    action: Action = "idle"
    action_elapsed: float = Field(default=0.0, ge=0.0, description="Seconds since it began.")
    action_progress: float = Field(
        default=0.0, ge=0.0, le=1.0, description="0..1 through a one-shot action; 0 for holds."
    )
    previous_action: Action = "idle"
    action_blend: float = Field(default=1.0, ge=0.0, le=1.0)
    expression: Expression = "neutral"
    previous_expression: Expression = "neutral"
    expression_blend: float = Field(default=1.0, ge=0.0, le=1.0)
    sitting: float = Field(default=0.0, ge=0.0, le=1.0, description="0 standing .. 1 seated.")
    facing_back: float = Field(default=0.0, ge=0.0, le=1.0, description="0 front .. 1 back.")
    mouth_open: float = Field(default=0.0, ge=0.0, le=1.0, description="Speech viseme.")
