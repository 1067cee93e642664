"""The shared Timeline: how actions, expressions, posture and facing evolve over time."""

from __future__ import annotations

from itertools import pairwise

import pytest

from pipelines.conditioning import (
    ACTION_SECONDS,
    ACTIONS,
    BLEND_SECONDS,
    GESTURES,
    HOLDS,
    Timeline,
)


@pytest.mark.parametrize("gesture", sorted(GESTURES))
def test_gesture_plays_once_then_returns_to_idle(gesture: str) -> None:
    tl = Timeline()
    assert tl.set_action(gesture, t=1.0)
    mid = tl.sample(1.0 + ACTION_SECONDS[gesture] / 2)
    assert mid.action == gesture
    assert mid.action_progress == pytest.approx(0.5)
    after = tl.sample(1.0 + ACTION_SECONDS[gesture] + 0.01)
    assert after.action == "idle"
    assert after.previous_action == gesture
    assert after.previous_action_progress == pytest.approx(1.0)


@pytest.mark.parametrize("hold", sorted(HOLDS))
def test_hold_lasts_until_the_next_action(hold: str) -> None:
    tl = Timeline()
    tl.set_action(hold, t=0.0)
    assert tl.sample(600.0).action == hold
    assert tl.set_action(hold, t=601.0) is False
    tl.set_action("nod", t=602.0)
    c = tl.sample(602.1)
    assert (c.action, c.previous_action) == ("nod", hold)
    assert c.previous_action_elapsed == pytest.approx(602.0)


def test_posture_persists_and_impossible_requests_are_no_ops() -> None:
    tl = Timeline()
    assert tl.set_action("stand_up", t=0.0) is False
    assert tl.set_action("sit_down", t=1.0)
    assert tl.set_action("sit_down", t=1.5) is False
    assert tl.sample(1.0).sitting == pytest.approx(0.0)
    assert 0.0 < tl.sample(1.6).sitting < 1.0
    assert tl.sample(100.0).sitting == pytest.approx(1.0)
    assert tl.posture == "sitting"
    assert tl.current_action(100.0) == "idle"
    tl.set_action("wave", t=101.0)
    assert tl.sample(102.0).sitting == pytest.approx(1.0)
    assert tl.set_action("stand_up", t=110.0)
    assert tl.sample(200.0).sitting == pytest.approx(0.0)


def test_turn_around_toggles_facing_smoothly() -> None:
    tl = Timeline()
    tl.set_action("turn_around", t=0.0)
    values = [tl.sample(i * 0.05).facing_back for i in range(40)]
    assert values[0] == 0.0 and values[-1] == 1.0
    assert all(b >= a for a, b in pairwise(values))
    assert max(b - a for a, b in pairwise(values)) < 0.2
    assert tl.facing == "back"
    tl.set_action("turn_around", t=5.0)
    assert tl.sample(10.0).facing_back == 0.0


def test_changes_cross_fade() -> None:
    tl = Timeline()
    tl.set_expression("sad", t=2.0)
    assert tl.sample(2.0).expression_blend == 0.0
    assert tl.sample(2.0 + BLEND_SECONDS / 2).expression_blend == pytest.approx(0.5)
    assert tl.sample(2.0 + BLEND_SECONDS).expression_blend == 1.0
    assert tl.sample(2.1).previous_expression == "neutral"
    assert tl.set_expression("sad", t=3.0) is False


def test_unknown_labels_are_rejected_clearly() -> None:
    tl = Timeline()
    with pytest.raises(ValueError, match="unknown action 'rm -rf'"):
        tl.set_action("rm -rf", t=0.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown expression"):
        tl.set_expression("evil", t=0.0)  # type: ignore[arg-type]


def test_every_action_samples_valid_conditioning() -> None:
    for action in ACTIONS:
        tl = Timeline()
        tl.set_action(action, t=0.0)
        for t in (0.0, 0.3, 1.0, 5.0):
            tl.sample(t, mouth_open=2.0)  # clamped, never invalid
