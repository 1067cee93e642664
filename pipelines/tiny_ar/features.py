"""Conditioning -> a fixed-length float vector, the per-frame input of the `tiny_ar` model.

Knows the vocabulary and how a directive unfolds in time (progress through a one-shot action,
elapsed time of a hold, cross-fade weights, posture, facing, speech). Deliberately knows nothing
about how the puppet draws any of it: the model has to learn the look from the videos. Time of
day (`Conditioning.t`) is left out on purpose, so idle sway, breathing and blinks are carried by
the frames in the model's cache, as in any autoregressive video model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from pipelines.conditioning import ACTIONS, EXPRESSIONS, Conditioning

_ACTION_INDEX = {name: i for i, name in enumerate(ACTIONS)}
_EXPRESSION_INDEX = {name: i for i, name in enumerate(EXPRESSIONS)}

HOLD_BEATS_HZ: tuple[float, ...] = (0.4, 0.8, 1.6, 3.2)
"""Frequencies (Hz) at which the elapsed time of an action is encoded, so holds such as
`dance` can loop with a beat; an octave ladder rather than any one renderer's tempo."""

_PHASE_SIZE = 6 + 2 * len(HOLD_BEATS_HZ)
FEATURE_SIZE = len(ACTIONS) + len(EXPRESSIONS) + 2 * _PHASE_SIZE + 3
"""Length of the vector `conditioning_features` returns."""
EXPRESSION_SLICE = slice(len(ACTIONS), len(ACTIONS) + len(EXPRESSIONS))
"""Where the expression mixture sits in the vector."""
NEUTRAL_FEATURE = len(ACTIONS) + _EXPRESSION_INDEX["neutral"]


def shows_expression(features) -> bool:  # type: ignore[no-untyped-def]
    """Whether any frame of a feature block (array or tensor, …, FEATURE_SIZE) has a face
    that is not wholly neutral."""
    return bool((features[..., NEUTRAL_FEATURE] < 1.0).any())


def _phase(progress: float, elapsed: float) -> list[float]:
    """Where an action is: its progress as a few harmonics, its elapsed time as beats."""
    angle = math.pi * progress
    features = [
        progress,
        math.sin(angle),
        math.sin(2 * angle),
        math.cos(2 * angle),
        math.sin(4 * angle),
        math.cos(4 * angle),
    ]
    for hz in HOLD_BEATS_HZ:
        features += [math.sin(2 * math.pi * hz * elapsed), math.cos(2 * math.pi * hz * elapsed)]
    return features


def conditioning_features(c: Conditioning) -> np.ndarray:
    """One frame's conditioning as a float32 vector of FEATURE_SIZE values.

    Cross-fades are kept as mixtures: the one-hot of the current action weighted by
    `action_blend` plus the previous action's by the rest, and likewise for expressions, so a
    change of directive is a smooth path in feature space rather than a jump.
    """
    w = c.action_blend
    actions = np.zeros(len(ACTIONS), np.float32)
    actions[_ACTION_INDEX[c.action]] += w
    actions[_ACTION_INDEX[c.previous_action]] += 1.0 - w
    e = c.expression_blend
    expressions = np.zeros(len(EXPRESSIONS), np.float32)
    expressions[_EXPRESSION_INDEX[c.expression]] += e
    expressions[_EXPRESSION_INDEX[c.previous_expression]] += 1.0 - e
    current = np.asarray(_phase(c.action_progress, c.action_elapsed), np.float32) * w
    previous = np.asarray(
        _phase(c.previous_action_progress, c.previous_action_elapsed), np.float32
    ) * (1.0 - w)
    body = np.asarray([c.sitting, c.facing_back, c.mouth_open], np.float32)
    return np.concatenate([actions, expressions, current, previous, body])


def features_for(conditioning: Sequence[Conditioning]) -> np.ndarray:
    """Stack of `conditioning_features`, shaped (len(conditioning), FEATURE_SIZE)."""
    return np.stack([conditioning_features(c) for c in conditioning])
