"""The stream runner: pacing arithmetic on an injected clock, and a real worker thread."""

from __future__ import annotations

import time
from collections import deque

import numpy as np
import pytest

from pipelines.base import Pipeline, PipelineGone, PipelineSpec
from pipelines.conditioning import Character, Conditioning, Timeline
from pipelines.stream import (
    PHASE_MARGIN_SECONDS,
    STEP_MARGIN_SECONDS,
    STEP_SAFETY,
    FpsMeter,
    Frame,
    FrameClock,
    PhaseLock,
    StepTimer,
    StreamRunner,
    newest_due,
)


class ColourPipeline(Pipeline):
    """A real Pipeline that paints each frame with its conditioning (action index as colour)."""

    def __init__(self, *, fail_steps: int = 0) -> None:
        self.spec = PipelineSpec(chunk_frames=2, fps=50.0, width=8, height=8)
        self.fail_steps = fail_steps
        self.closed = False
        self.steps = 0

    def reset(self, character: Character) -> None:
        self.closed = False

    def step(self, conditioning):  # type: ignore[no-untyped-def]
        self._check_conditioning(conditioning)
        self.steps += 1
        if self.fail_steps:
            self.fail_steps -= 1
            raise RuntimeError("transient failure")
        return np.stack(
            [np.full((8, 8, 3), 10 * (c.action != "idle"), np.uint8) for c in conditioning]
        )

    def close(self) -> None:
        self.closed = True


def test_frame_clock_schedules_and_catches_up() -> None:
    clock = FrameClock(fps=10.0, anchor=100.0)
    assert clock.take(3) == pytest.approx([100.0, 100.1, 100.2])
    clock.catch_up(earliest=100.25)  # next frame (100.3) still in the future: unchanged
    assert clock.display_time(clock.next_index) == pytest.approx(100.3)
    clock.catch_up(earliest=105.0)  # fell behind: the next frame is due now, not in the past
    assert clock.take(1) == pytest.approx([105.0])


def test_newest_due_drops_late_frames_and_keeps_future_ones() -> None:
    frames = deque(Frame(np.zeros(1), Conditioning(), t) for t in (1.0, 2.0, 3.0))
    assert newest_due(frames, 0.5) is None
    assert newest_due(frames, 2.5).display_at == 2.0
    assert [f.display_at for f in frames] == [3.0]


def test_step_timer_starts_steps_as_late_as_is_safe() -> None:
    timer = StepTimer(weight=0.5)
    assert timer.start_by(due=10.0) == float("-inf")  # nothing measured: start at once
    timer.record(0.020)
    timer.record(0.040)
    assert timer.seconds == pytest.approx(0.030)
    assert timer.start_by(due=10.0) == pytest.approx(
        10.0 - STEP_SAFETY * 0.030 - STEP_MARGIN_SECONDS
    )


def test_phase_lock_moves_due_times_to_just_before_the_consumer_asks() -> None:
    lock = PhaseLock(window=4)
    waits = [0.021, 0.020, 0.035, 0.022]  # the consumer asks ~20 ms after frames fall due
    assert [lock.record(w) for w in waits] == pytest.approx([0, 0, 0, 0.020 - PHASE_MARGIN_SECONDS])
    assert [lock.record(0.001) for _ in range(4)][-1] == 0.0  # already in phase: no slack


def test_fps_meter_over_a_window() -> None:
    meter = FpsMeter(window=1.0)
    for i in range(31):
        meter.tick(i / 30)
    assert meter.fps() == pytest.approx(30.0)
    meter.tick(10.0)
    assert meter.fps() == 0.0  # one tick in the window


def _run(pipeline: ColourPipeline, timeline: Timeline, seconds: float) -> list[Frame]:
    runner = StreamRunner(pipeline, Character(name="T"), timeline.sample)
    runner.start()
    frames, end = [], time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            frame = runner.next_frame()
            if frame is not None:
                frames.append(frame)
            time.sleep(0.005)
    finally:
        runner.stop()
    assert not runner.running and pipeline.closed
    return frames


def test_runner_streams_in_order_and_a_change_lands_in_the_next_chunk() -> None:
    timeline = Timeline(time.monotonic())
    pipeline = ColourPipeline()
    runner = StreamRunner(pipeline, Character(name="T"), timeline.sample)
    runner.start()
    try:
        deadline = time.monotonic() + 5
        while runner.next_frame() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        at = runner.change_time()
        timeline.set_action("wave", at)
        changed = None
        while changed is None and time.monotonic() < deadline:
            frame = runner.next_frame()
            if frame is not None and frame.image.max() > 0:
                changed = frame
            time.sleep(0.002)
        assert changed is not None and changed.conditioning.action == "wave"
        assert changed.display_at - at < 2 / pipeline.spec.fps + 1e-6
        assert changed.conditioning.action_elapsed > 0  # the first changed frame is under way
        assert runner.showing.conditioning.action == "wave"
    finally:
        runner.stop()
    assert pipeline.closed


def test_runner_survives_failing_steps() -> None:
    pipeline = ColourPipeline(fail_steps=3)
    frames = _run(pipeline, Timeline(time.monotonic()), seconds=1.5)
    assert pipeline.steps > 3 and len(frames) > 10
    times = [f.display_at for f in frames]
    assert times == sorted(times)


class VanishingPipeline(ColourPipeline):
    """Steps twice, then its (remote) worker is gone for good."""

    def step(self, conditioning):  # type: ignore[no-untyped-def]
        if self.steps >= 2:
            self.steps += 1
            raise PipelineGone("the worker is gone")
        return super().step(conditioning)


def test_a_pipeline_that_is_gone_ends_the_stream_with_its_reason() -> None:
    pipeline = VanishingPipeline()
    runner = StreamRunner(pipeline, Character(name="Test"), Timeline(time.monotonic()).sample)
    runner.start()
    deadline = time.monotonic() + 5
    while runner.running and time.monotonic() < deadline:
        runner.next_frame()
        time.sleep(0.01)
    assert not runner.running and runner.error == runner.gone == "the worker is gone"
    assert pipeline.steps == 3 and pipeline.closed  # not retried; freed


class SlowPipeline(ColourPipeline):
    """Takes longer per chunk than the chunk lasts on screen: the stream must slow down."""

    def step(self, conditioning):  # type: ignore[no-untyped-def]
        time.sleep(0.06)  # 2 frames at 50 fps last 0.04 s
        return super().step(conditioning)


def test_a_pipeline_slower_than_real_time_slows_the_stream_without_dropping_frames() -> None:
    pipeline = SlowPipeline()
    frames = _run(pipeline, Timeline(time.monotonic()), seconds=1.5)
    rendered = 2 * (pipeline.steps - 1)  # the last chunk may still be in flight
    assert len(frames) >= 0.9 * rendered  # frames due before they existed were dropped: ~0.5
