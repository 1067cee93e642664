"""The puppet renderer: every label legible and distinct, deterministic, smooth, appearance-driven."""

from __future__ import annotations

from itertools import combinations, pairwise

import numpy as np
import pytest

from pipelines.conditioning import (
    ACTION_SECONDS,
    ACTIONS,
    EXPRESSIONS,
    Appearance,
    Character,
    Conditioning,
    Timeline,
)
from pipelines.puppet.pipeline import PuppetPipeline
from pipelines.puppet.pose import pose_for

SIZE = 512


@pytest.fixture(scope="module")
def puppet() -> PuppetPipeline:
    pipeline = PuppetPipeline(width=SIZE, height=SIZE, chunk_frames=1)
    pipeline.reset(Character(name="Test"))
    return pipeline


def _frame_for_action(pipeline: PuppetPipeline, action: str) -> np.ndarray:
    tl = Timeline()
    tl.set_action(action, 0.0)
    t = (
        3.0
        if action in ("sit_down", "turn_around", "stand_up")
        else 0.45 * ACTION_SECONDS.get(action, 2.0)
    )
    if action == "stand_up":  # only meaningful from sitting
        tl = Timeline()
        tl.set_action("sit_down", 0.0)
        tl.set_action("stand_up", 2.0)
        t = 2.6
    return pipeline.step([tl.sample(t)])[0]


def _frame_for_expression(pipeline: PuppetPipeline, expression: str) -> np.ndarray:
    tl = Timeline()
    tl.set_expression(expression, 0.0)
    return pipeline.step([tl.sample(1.0)])[0]


def _diff(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of pixels that differ visibly."""
    return float((np.abs(a.astype(int) - b.astype(int)).max(-1) > 24).mean())


def test_frames_are_uint8_rgb_of_the_declared_size(puppet: PuppetPipeline) -> None:
    out = puppet.step([Conditioning()])
    assert out.shape == (1, SIZE, SIZE, 3) and out.dtype == np.uint8


def test_every_action_is_distinct_from_idle_and_from_each_other(puppet: PuppetPipeline) -> None:
    frames = {a: _frame_for_action(puppet, a) for a in ACTIONS}
    for action, frame in frames.items():
        if action != "idle":
            assert _diff(frame, frames["idle"]) > 0.004, f"{action} looks like idle"
    for a, b in combinations(ACTIONS, 2):
        assert _diff(frames[a], frames[b]) > 0.002, f"{a} and {b} look the same"


def test_every_expression_is_distinct_from_neutral_and_from_each_other(
    puppet: PuppetPipeline,
) -> None:
    frames = {e: _frame_for_expression(puppet, e) for e in EXPRESSIONS}
    for e, frame in frames.items():
        if e != "neutral":
            assert _diff(frame, frames["neutral"]) > 0.0008, f"{e} looks like neutral"
    for a, b in combinations(EXPRESSIONS, 2):
        assert _diff(frames[a], frames[b]) > 0.0005, f"{a} and {b} look the same"


def test_sitting_and_back_view_change_the_silhouette(puppet: PuppetPipeline) -> None:
    idle = _frame_for_action(puppet, "idle")
    assert _diff(_frame_for_action(puppet, "sit_down"), idle) > 0.03
    assert _diff(_frame_for_action(puppet, "turn_around"), idle) > 0.01


def test_deterministic_for_the_same_character_and_seed() -> None:
    tl = Timeline()
    tl.set_action("dance", 0.0)
    conditioning = [tl.sample(i / 30) for i in range(6)]
    runs = []
    for _ in range(2):
        p = PuppetPipeline(width=128, height=128, chunk_frames=6)
        p.reset(Character(name="Same", seed=7))
        runs.append(p.step(conditioning))
    np.testing.assert_array_equal(runs[0], runs[1])


def test_two_characters_look_clearly_different() -> None:
    other = Appearance(
        skin="#8d5524",
        hair="#111111",
        hair_style="long",
        eyes="#2e7d32",
        top="#c0392b",
        bottom="#f4f1de",
        background="#1d3557",
        background_far="#457b9d",
    )
    frames = []
    for appearance in (Appearance(), other):
        p = PuppetPipeline(width=128, height=128, chunk_frames=1)
        p.reset(Character(name="C", appearance=appearance))
        frames.append(p.step([Conditioning()])[0])
    assert _diff(*frames) > 0.3


def test_transitions_are_smooth() -> None:
    """An interrupted gesture cross-fades over several frames: no frame covers more than a
    quarter of the arm's travel (a pop would cover all of it in one)."""
    tl = Timeline()
    tl.set_action("wave", 0.0)
    tl.set_action("cross_arms", 0.9)  # interrupts the wave mid-way
    poses = [pose_for(tl.sample(i / 30)) for i in range(90)]
    uppers = [p.arm_left.upper for p in poses]
    travel = max(uppers) - min(uppers)
    assert travel > 1.5
    assert max(abs(b - a) for a, b in pairwise(uppers)) < 0.25 * travel


def test_gesture_returns_to_idle_pose() -> None:
    tl = Timeline()
    tl.set_action("wave", 0.0)
    end = pose_for(tl.sample(ACTION_SECONDS["wave"] + 0.5))
    idle = pose_for(Timeline().sample(ACTION_SECONDS["wave"] + 0.5))
    assert end.arm_left == idle.arm_left


def test_mouth_open_drives_lip_sync(puppet: PuppetPipeline) -> None:
    closed = puppet.step([Conditioning(t=1.0, mouth_open=0.0)])[0]
    opened = puppet.step([Conditioning(t=1.0, mouth_open=1.0)])[0]
    assert _diff(closed, opened) > 0.0005


def test_mouth_shapes_look_different(puppet: PuppetPipeline) -> None:
    frames = {
        shape: puppet.step([Conditioning(t=1.0, mouth_open=0.6, mouth_shape=shape)])[0]
        for shape in ("open", "wide", "round")
    }
    assert _diff(frames["open"], frames["wide"]) > 0.0002
    assert _diff(frames["open"], frames["round"]) > 0.0002


def test_bad_conditioning_is_rejected_clearly(puppet: PuppetPipeline) -> None:
    with pytest.raises(ValueError, match="needs 1 conditionings"):
        puppet.step([Conditioning(), Conditioning()])
    with pytest.raises(ValueError, match="expected pipelines.conditioning.Conditioning"):
        puppet.step([{"action": "wave"}])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        Conditioning(action="moonwalk")  # type: ignore[arg-type]


def test_small_sizes_render() -> None:
    p = PuppetPipeline(width=64, height=64, chunk_frames=2)
    p.reset(Character(name="Small"))
    out = p.step([Conditioning(), Conditioning(t=0.1)])
    assert out.shape == (2, 64, 64, 3)
    assert out.std() > 10
