"""The conditioning vocabulary: what any pipeline can be asked to render.

This module is type-only (pydantic and the standard library): the persona layer imports it to
speak the pipelines' language, so it must stay free of torch, numpy and every pipeline. It knows
the names of actions and expressions, how each kind of action behaves over time, what a
character looks like, and the per-frame `Conditioning` a pipeline receives. It knows nothing
about how anything is drawn or generated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
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

MouthShape = Literal["rest", "closed", "open", "wide", "round", "teeth"]
"""Visemes, from the sound being made: `rest` (silent), `closed` (m, b, p), `open` (ah),
`wide` (ee, eh), `round` (oo, oh, w), `teeth` (f, v, s). How open the mouth is travels
separately as `mouth_open`, so a loud "oh" and a soft one share a shape."""
MOUTH_SHAPES: tuple[str, ...] = get_args(MouthShape)

BLEND_SECONDS = 0.2
"""How long a change of action or expression cross-fades, so poses never pop."""

Posture = Literal["standing", "sitting"]
Facing = Literal["front", "back"]

_HEX = r"^#[0-9a-fA-F]{6}$"


def hex_rgb(hex_colour: str) -> tuple[int, int, int]:
    """(red, green, blue), 0-255, of an Appearance colour such as "#2a9d8f"."""
    red, green, blue = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return red, green, blue


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


NAME_MAX_CHARS = 100
"""The longest character name: cards are held to it too, so a loaded card always renders."""


class Character(BaseModel):
    """The identity a pipeline is reset with: stays the same for the whole session."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=NAME_MAX_CHARS)
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
    previous_action_elapsed: float = Field(default=0.0, ge=0.0)
    previous_action_progress: float = Field(
        default=0.0, ge=0.0, le=1.0, description="Where the previous action was when replaced."
    )
    action_blend: float = Field(default=1.0, ge=0.0, le=1.0)
    expression: Expression = "neutral"
    previous_expression: Expression = "neutral"
    expression_blend: float = Field(default=1.0, ge=0.0, le=1.0)
    sitting: float = Field(default=0.0, ge=0.0, le=1.0, description="0 standing .. 1 seated.")
    facing_back: float = Field(default=0.0, ge=0.0, le=1.0, description="0 front .. 1 back.")
    mouth_open: float = Field(default=0.0, ge=0.0, le=1.0, description="How open, from speech.")
    mouth_shape: MouthShape = "rest"


def _smoothstep(x: float) -> float:
    x = min(max(x, 0.0), 1.0)
    return x * x * (3.0 - 2.0 * x)


def _ramp_weight(t: float, start: float, seconds: float) -> float:
    return 1.0 if seconds <= 0 else min(max((t - start) / seconds, 0.0), 1.0)


@dataclass(frozen=True)
class _Ramp:
    """A value easing from `start_value` to `target` over [start, start + seconds]."""

    start_value: float
    target: float
    start: float
    seconds: float

    def value(self, t: float) -> float:
        w = _smoothstep(_ramp_weight(t, self.start, self.seconds))
        return self.start_value + (self.target - self.start_value) * w


@dataclass(frozen=True)
class _Playing:
    """An action and when it began."""

    action: str
    start: float

    @property
    def seconds(self) -> float:
        return ACTION_SECONDS.get(self.action, math.inf)

    @property
    def end(self) -> float:
        return self.start + self.seconds

    def elapsed(self, t: float) -> float:
        return max(t - self.start, 0.0)

    def progress(self, t: float) -> float:
        return 0.0 if math.isinf(self.seconds) else min(self.elapsed(t) / self.seconds, 1.0)


class Timeline:
    """How a character's action, expression, posture and facing evolve over time.

    Pure and clock-free: every call takes the time `t` (seconds, non-decreasing), so renderers,
    the stream runner, training-data generators and tests all see the same behaviour. One-shot
    actions end by themselves and hand over to idle; posture and facing persist; holds play
    until replaced; every change cross-fades over BLEND_SECONDS. Not thread-safe: the owner of
    a live session guards it with a lock.
    """

    def __init__(self, t: float = 0.0) -> None:
        self._playing = _Playing("idle", t)
        self._previous = _Playing("idle", t)
        self._previous_at = t
        self._expression: str = "neutral"
        self._previous_expression: str = "neutral"
        self._expression_start = t
        self._sitting = _Ramp(0.0, 0.0, t, 0.0)
        self._facing = _Ramp(0.0, 0.0, t, 0.0)

    @property
    def posture(self) -> Posture:
        return "sitting" if self._sitting.target >= 0.5 else "standing"

    @property
    def facing(self) -> Facing:
        return "back" if self._facing.target >= 0.5 else "front"

    @property
    def expression(self) -> str:
        return self._expression

    def current_action(self, t: float) -> str:
        self._settle(t)
        return self._playing.action

    def set_action(self, action: Action, t: float) -> bool:
        """Start `action` at `t`. Returns False when it changes nothing (sit_down while seated,
        stand_up while standing, the hold or idle that is already playing)."""
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")
        self._settle(t)
        sitting, seated_target = self._sitting.value(t), self._sitting.target
        if (action == "sit_down" and seated_target >= 0.5) or (
            action == "stand_up" and seated_target < 0.5
        ):
            return False
        if action == self._playing.action and (action in HOLDS or action == "idle"):
            return False
        self._begin(_Playing(action, t), t)
        seconds = ACTION_SECONDS.get(action, 0.0)
        if action == "sit_down":
            self._sitting = _Ramp(sitting, 1.0, t, seconds)
        elif action == "stand_up":
            self._sitting = _Ramp(sitting, 0.0, t, seconds)
        elif action == "turn_around":
            self._facing = _Ramp(self._facing.value(t), 1.0 - self._facing.target, t, seconds)
        return True

    def set_expression(self, expression: Expression, t: float) -> bool:
        """Change the expression at `t`; it holds until changed. False if already showing."""
        if expression not in EXPRESSIONS:
            raise ValueError(
                f"unknown expression {expression!r}; expected one of {', '.join(EXPRESSIONS)}"
            )
        if expression == self._expression:
            return False
        self._previous_expression, self._expression = self._expression, expression
        self._expression_start = t
        return True

    def sample(
        self, t: float, *, mouth_open: float = 0.0, mouth_shape: MouthShape = "rest"
    ) -> Conditioning:
        """What the frame at time `t` shows."""
        self._settle(t)
        playing, previous = self._playing, self._previous
        return Conditioning(
            t=max(t, 0.0),
            action=playing.action,
            action_elapsed=playing.elapsed(t),
            action_progress=playing.progress(t),
            previous_action=previous.action,
            previous_action_elapsed=previous.elapsed(self._previous_at),
            previous_action_progress=previous.progress(self._previous_at),
            action_blend=_ramp_weight(t, playing.start, BLEND_SECONDS),
            expression=self._expression,
            previous_expression=self._previous_expression,
            expression_blend=_ramp_weight(t, self._expression_start, BLEND_SECONDS),
            sitting=self._sitting.value(t),
            facing_back=self._facing.value(t),
            mouth_open=min(max(mouth_open, 0.0), 1.0),
            mouth_shape=mouth_shape,
        )

    def _begin(self, playing: _Playing, t: float) -> None:
        self._previous, self._previous_at = self._playing, t
        self._playing = playing

    def _settle(self, t: float) -> None:
        """Hand a finished one-shot action over to idle, at the moment it ended."""
        if self._playing.action != "idle" and t >= self._playing.end:
            end = self._playing.end
            self._begin(_Playing("idle", end), end)
