"""Pose maths for the puppet: Conditioning in, joint angles and face parameters out.

Pure functions of (conditioning, seed), no drawing library, so the same poses can be tested,
blended and reused as a teacher signal. Every action and expression is a small function of its
progress or elapsed time; transitions cross-fade by the conditioning's blend weights, so the
pose is continuous in time and never pops. Angles are radians; an arm angle of 0 hangs straight
down, pi/2 points straight out sideways and pi straight up; a negative angle swings across the
body. Directions like "left" are the viewer's. Lengths are in the 512-unit design space of
`draw.py`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

from pipelines.conditioning import Conditioning

TAU = 2.0 * math.pi
ENVELOPE_EDGE = 0.12
"""Fraction of a gesture spent easing in and easing out."""


@dataclass(frozen=True)
class Arm:
    upper: float = 0.12
    fore: float = 0.05
    hand: str = "open"  # open | fist | thumb | point


VISEME_WIDTH: dict[str, float] = {
    "rest": 1.0,
    "closed": 1.05,
    "open": 1.0,
    "wide": 1.3,
    "round": 0.55,
    "teeth": 1.15,
}
"""How a speech mouth shape (pipelines.conditioning.MouthShape) stretches the lips."""


@dataclass(frozen=True)
class Face:
    eye_open_left: float = 1.0
    eye_open_right: float = 1.0
    eye_scale: float = 1.0
    eye_smile: float = 0.0  # 1 = eyes closed as happy arcs
    pupil_dx: float = 0.0  # -1..1
    pupil_dy: float = 0.0
    pupil_scale: float = 1.0
    brow_raise_left: float = 0.0  # -1 (low) .. 1 (high)
    brow_raise_right: float = 0.0
    brow_tilt: float = 0.0  # + = inner ends up (worried), - = inner ends down (angry)
    mouth_smile: float = 0.15  # -1 frown .. 1 grin
    mouth_open: float = 0.0
    mouth_width: float = 1.0
    mouth_wobble: float = 0.0
    blush: float = 0.0
    tear: float = 0.0
    sweat: float = 0.0
    anger_mark: float = 0.0
    zzz: float = 0.0
    question: float = 0.0
    exclaim: float = 0.0
    thought: float = 0.0


@dataclass(frozen=True)
class Pose:
    dx: float = 0.0  # whole-body offset
    dy: float = 0.0
    lean: float = 0.0  # torso roll
    bow: float = 0.0  # 0..1 forward bend
    breathe: float = 0.0
    shrug: float = 0.0  # 0..1 shoulders up
    crouch: float = 0.0  # 0..1 knee bend
    hip_sway: float = 0.0
    head_tilt: float = 0.0
    head_yaw: float = 0.0  # -1 looks left .. 1 looks right
    head_pitch: float = 0.0  # + looks down
    arm_left: Arm = Arm()
    arm_right: Arm = Arm()
    sitting: float = 0.0
    facing_back: float = 0.0
    face: Face = Face()


def _lerp_values(a: object, b: object, w: float) -> object:
    """Interpolate two instances of the same frozen dataclass field by field."""
    changes = {}
    for f in fields(a):  # type: ignore[arg-type]
        va, vb = getattr(a, f.name), getattr(b, f.name)
        if isinstance(va, float | int) and not isinstance(va, bool):
            changes[f.name] = va + (vb - va) * w
        elif hasattr(va, "__dataclass_fields__"):
            changes[f.name] = _lerp_values(va, vb, w)
        else:
            changes[f.name] = vb if w >= 0.5 else va
    return replace(a, **changes)  # type: ignore[type-var]


def _ease(w: float) -> float:
    w = min(max(w, 0.0), 1.0)
    return w * w * (3.0 - 2.0 * w)


def _attack(w: float) -> float:
    """Starts moving at once and settles gently (a reaction should be visible in a frame)."""
    w = min(max(w, 0.0), 1.0)
    return 1.0 - (1.0 - w) ** 2


def envelope(progress: float) -> float:
    """0 -> 1 -> 0 over a gesture: a quick attack, hold, then a gentle return."""
    return min(_attack(progress / ENVELOPE_EDGE), _ease((1.0 - progress) / ENVELOPE_EDGE))


# --- actions: (progress, elapsed) -> Pose -------------------------------------------------


def _idle(p: float, e: float) -> Pose:
    return Pose()


def _wave(p: float, e: float) -> Pose:
    k = envelope(p)
    swing = 0.45 * math.sin(TAU * 2.2 * e)
    return Pose(
        arm_left=Arm(upper=0.12 + 2.35 * k, fore=0.05 + k * (0.35 + swing)),
        head_tilt=0.08 * k,
    )


def _nod(p: float, e: float) -> Pose:
    return Pose(head_pitch=0.9 * envelope(p) * max(0.0, math.sin(TAU * 2.0 * p)))


def _shake_head(p: float, e: float) -> Pose:
    return Pose(head_yaw=0.75 * envelope(p) * math.sin(TAU * 2.5 * p))


def _bow(p: float, e: float) -> Pose:
    k = _ease(math.sin(math.pi * p))
    return Pose(bow=k, head_pitch=0.5 * k, arm_left=Arm(0.05, 0.0), arm_right=Arm(0.05, 0.0))


def _point(p: float, e: float) -> Pose:
    k = envelope(p)
    return Pose(
        arm_left=Arm(upper=0.12 + 1.45 * k, fore=0.05 - 0.05 * k, hand="point"), head_yaw=0.35 * k
    )


def _thumbs_up(p: float, e: float) -> Pose:
    k = envelope(p)
    return Pose(
        arm_left=Arm(upper=0.12 + 0.55 * k, fore=0.05 - 3.2 * k, hand="thumb"), head_tilt=-0.1 * k
    )


def _clap(p: float, e: float) -> Pose:
    k = envelope(p)
    beat = 0.5 + 0.5 * math.cos(TAU * 3.0 * e)  # 1 = hands apart
    fore = -(1.75 - 0.45 * beat) * k
    arm = Arm(upper=0.12 + 0.25 * k, fore=0.05 + fore, hand="open")
    return Pose(arm_left=arm, arm_right=arm, dy=-3.0 * k * (1.0 - beat))


def _shrug(p: float, e: float) -> Pose:
    k = envelope(p)
    arm = Arm(upper=0.12 + 0.35 * k, fore=0.05 + 1.25 * k)
    return Pose(shrug=k, arm_left=arm, arm_right=arm, head_tilt=0.15 * k)


def _jump(p: float, e: float) -> Pose:
    crouch = _ease(1.0 - abs(p - 0.2) / 0.2) if p < 0.4 else _ease(1.0 - abs(p - 0.85) / 0.15)
    air = math.sin(math.pi * (p - 0.3) / 0.45) if 0.3 <= p <= 0.75 else 0.0
    arms_up = Arm(upper=0.12 + 2.4 * air, fore=0.05 + 0.2 * air)
    return Pose(dy=-70.0 * air + 28.0 * crouch, crouch=crouch, arm_left=arms_up, arm_right=arms_up)


def _dance(p: float, e: float) -> Pose:
    k = _ease(e / 0.4)
    beat = math.sin(TAU * 1.6 * e)
    bounce = abs(math.sin(TAU * 1.6 * e))
    left_up = 0.5 + 0.5 * beat
    return Pose(
        dx=22.0 * beat * k,
        dy=-14.0 * bounce * k,
        hip_sway=0.7 * beat * k,
        lean=0.12 * beat * k,
        head_tilt=-0.18 * beat * k,
        crouch=0.25 * (1 - bounce) * k,
        arm_left=Arm(upper=0.12 + k * (0.6 + 1.9 * left_up), fore=0.05 + k * 0.6 * (1 - left_up)),
        arm_right=Arm(upper=0.12 + k * (0.6 + 1.9 * (1 - left_up)), fore=0.05 + k * 0.6 * left_up),
    )


def _posture_change(p: float, e: float) -> Pose:
    k = math.sin(math.pi * p)
    arm = Arm(upper=0.12 + 0.5 * k, fore=0.05 - 0.3 * k)
    return Pose(arm_left=arm, arm_right=arm, bow=0.25 * k)


def _turn_around(p: float, e: float) -> Pose:
    k = math.sin(math.pi * p)
    return Pose(arm_left=Arm(0.12 + 0.25 * k, 0.1), arm_right=Arm(0.12 + 0.25 * k, 0.1))


def _look(direction: float):
    def look(p: float, e: float) -> Pose:
        k = envelope(p)
        return Pose(
            head_yaw=0.85 * direction * k,
            lean=0.04 * direction * k,
            face=Face(pupil_dx=0.9 * direction * k),
        )

    return look


def _think(p: float, e: float) -> Pose:
    k = _ease(e / 0.5)
    return Pose(
        arm_left=Arm(upper=0.12 - 0.42 * k, fore=0.05 - 2.85 * k, hand="fist"),
        arm_right=Arm(upper=0.12 - 0.3 * k, fore=0.05 - 1.45 * k),
        head_tilt=0.14 * k,
        face=Face(pupil_dx=0.5 * k, pupil_dy=-0.7 * k, thought=k),
    )


def _cross_arms(p: float, e: float) -> Pose:
    k = _ease(e / 0.5)
    arm = Arm(upper=0.12 + 0.15 * k, fore=0.05 - 1.95 * k, hand="fist")
    return Pose(arm_left=arm, arm_right=arm, head_tilt=-0.06 * k, lean=-0.03 * k)


ACTION_POSES = {
    "idle": _idle,
    "wave": _wave,
    "nod": _nod,
    "shake_head": _shake_head,
    "bow": _bow,
    "point": _point,
    "thumbs_up": _thumbs_up,
    "clap": _clap,
    "shrug": _shrug,
    "jump": _jump,
    "dance": _dance,
    "sit_down": _posture_change,
    "stand_up": _posture_change,
    "turn_around": _turn_around,
    "look_left": _look(-1.0),
    "look_right": _look(1.0),
    "think": _think,
    "cross_arms": _cross_arms,
}

# --- expressions: elapsed -> Face ----------------------------------------------------------

EXPRESSION_FACES = {
    "neutral": Face(),
    "happy": Face(
        eye_open_left=0.8,
        eye_open_right=0.8,
        mouth_smile=0.85,
        mouth_width=1.15,
        brow_raise_left=0.35,
        brow_raise_right=0.35,
        blush=0.35,
    ),
    "laughing": Face(
        eye_smile=1.0,
        mouth_smile=1.0,
        mouth_open=0.75,
        mouth_width=1.25,
        brow_raise_left=0.5,
        brow_raise_right=0.5,
        blush=0.5,
    ),
    "sad": Face(
        eye_open_left=0.7,
        eye_open_right=0.7,
        pupil_dy=0.5,
        brow_tilt=0.9,
        brow_raise_left=0.1,
        brow_raise_right=0.1,
        mouth_smile=-0.8,
        mouth_width=0.85,
        tear=1.0,
    ),
    "angry": Face(
        eye_open_left=0.75,
        eye_open_right=0.75,
        brow_tilt=-1.0,
        brow_raise_left=-0.6,
        brow_raise_right=-0.6,
        mouth_smile=-0.6,
        mouth_open=0.25,
        mouth_width=1.05,
        anger_mark=1.0,
    ),
    "surprised": Face(
        eye_scale=1.3,
        pupil_scale=0.8,
        brow_raise_left=1.0,
        brow_raise_right=1.0,
        mouth_smile=0.0,
        mouth_open=0.85,
        mouth_width=0.55,
        exclaim=1.0,
    ),
    "confused": Face(
        brow_raise_left=0.9,
        brow_raise_right=-0.5,
        mouth_smile=-0.15,
        mouth_wobble=1.0,
        pupil_dx=0.3,
        pupil_dy=-0.3,
        question=1.0,
    ),
    "thinking": Face(
        eye_open_left=0.85,
        eye_open_right=0.85,
        pupil_dx=-0.6,
        pupil_dy=-0.8,
        brow_raise_left=0.6,
        brow_raise_right=-0.1,
        mouth_smile=0.0,
        mouth_width=0.6,
        thought=1.0,
    ),
    "shy": Face(
        eye_open_left=0.7,
        eye_open_right=0.7,
        pupil_dx=0.6,
        pupil_dy=0.6,
        brow_tilt=0.5,
        mouth_smile=0.35,
        mouth_width=0.6,
        blush=1.0,
    ),
    "wink": Face(
        eye_open_left=0.0,
        eye_open_right=1.0,
        eye_smile=0.0,
        mouth_smile=0.8,
        mouth_width=1.1,
        brow_raise_right=0.4,
        brow_raise_left=-0.3,
        blush=0.2,
    ),
    "scared": Face(
        eye_scale=1.25,
        pupil_scale=0.55,
        brow_tilt=1.0,
        brow_raise_left=0.8,
        brow_raise_right=0.8,
        mouth_smile=-0.5,
        mouth_open=0.45,
        mouth_width=0.75,
        mouth_wobble=1.0,
        sweat=1.0,
    ),
    "sleepy": Face(
        eye_open_left=0.22,
        eye_open_right=0.22,
        pupil_dy=0.4,
        brow_raise_left=-0.3,
        brow_raise_right=-0.3,
        mouth_smile=0.0,
        mouth_open=0.15,
        mouth_width=0.6,
        zzz=1.0,
    ),
}

EXPRESSION_MOTION = {
    "laughing": lambda e: Pose(dy=-4.0 * abs(math.sin(TAU * 2.5 * e)), head_tilt=0.08),
    "scared": lambda e: Pose(dx=1.8 * math.sin(TAU * 9.0 * e), shrug=0.35),
    "sleepy": lambda e: Pose(head_tilt=0.12 + 0.04 * math.sin(TAU * 0.3 * e), head_pitch=0.3),
    "shy": lambda e: Pose(head_tilt=-0.12, head_pitch=0.25),
    "sad": lambda e: Pose(head_pitch=0.3, shrug=0.1),
    "angry": lambda e: Pose(head_pitch=0.15, lean=0.0),
    "confused": lambda e: Pose(head_tilt=0.2),
    "thinking": lambda e: Pose(head_tilt=0.1),
}
_NO_MOTION = Pose()


def blink(t: float, seed: int) -> float:
    """Eye openness multiplier: a quick blink every 2.5-5.5 s, at times fixed by the seed."""
    period_index = math.floor(t / 4.0)
    phase = ((period_index * 2654435761 + seed * 40503) % 1000) / 1000.0
    blink_at = period_index * 4.0 + 0.5 + 3.0 * phase
    d = abs(t - blink_at)
    return 1.0 if d > 0.08 else d / 0.08


def pose_for(c: Conditioning, *, seed: int = 0) -> Pose:
    """The full pose for one frame."""
    current = ACTION_POSES[c.action](c.action_progress, c.action_elapsed)
    previous = ACTION_POSES[c.previous_action](
        c.previous_action_progress, c.previous_action_elapsed
    )
    # From idle a gesture's own envelope already starts at the rest pose, so no cross-fade is
    # needed (and none would delay the first visible movement); interruptions cross-fade.
    blend = 1.0 if c.previous_action == "idle" else _ease(c.action_blend)
    body: Pose = _lerp_values(previous, current, blend)  # type: ignore[assignment]

    face: Face = _lerp_values(  # type: ignore[assignment]
        EXPRESSION_FACES[c.previous_expression],
        EXPRESSION_FACES[c.expression],
        _ease(c.expression_blend),
    )
    motion: Pose = _lerp_values(  # type: ignore[assignment]
        EXPRESSION_MOTION.get(c.previous_expression, lambda e: _NO_MOTION)(c.t),
        EXPRESSION_MOTION.get(c.expression, lambda e: _NO_MOTION)(c.t),
        _ease(c.expression_blend),
    )
    # Actions that move the eyes or add props combine with the expression's face.
    action_face = body.face
    eyes = blink(c.t, seed)
    face = replace(
        face,
        eye_open_left=face.eye_open_left * eyes,
        eye_open_right=face.eye_open_right * eyes,
        pupil_dx=max(-1.0, min(1.0, face.pupil_dx + action_face.pupil_dx)),
        pupil_dy=max(-1.0, min(1.0, face.pupil_dy + action_face.pupil_dy)),
        thought=max(face.thought, action_face.thought),
        mouth_open=min(1.0, face.mouth_open + 0.8 * c.mouth_open),
        mouth_width=face.mouth_width * VISEME_WIDTH[c.mouth_shape],
        mouth_smile=face.mouth_smile * (0.4 if c.mouth_shape == "round" else 1.0),
    )
    sway = math.sin(TAU * 0.23 * c.t + seed % 7)
    return replace(
        body,
        dx=body.dx + motion.dx + 3.0 * sway,
        dy=body.dy + motion.dy,
        lean=body.lean + motion.lean + 0.015 * sway,
        shrug=min(1.0, body.shrug + motion.shrug),
        head_tilt=body.head_tilt + motion.head_tilt + 0.03 * sway,
        head_pitch=body.head_pitch + motion.head_pitch,
        breathe=math.sin(TAU * 0.28 * c.t),
        sitting=c.sitting,
        facing_back=c.facing_back,
        face=face,
    )
