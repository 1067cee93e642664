"""The per-session stream runner: steps a pipeline in a worker thread, hands out finished frames.

The worker renders one chunk at a time, at most about one chunk ahead of the display, sampling
the conditioning at each frame's *display* time just before rendering, so a change made now
shows in the next chunk. It starts each step as late as it safely can (the chunk's first frame
is due minus a margin over how long steps take), so what is sampled is as fresh as possible,
and a phase lock makes frames fall due just before the consumer asks. The consumer (the FastRTC
generator, on the event loop) never blocks: `next_frame(now)` returns the newest frame whose
display time has come, or None (repeat the last one). A step that raises is logged and
retried; the stream never dies silently. If nobody asks for frames for a while (page closed,
connection dropped), the worker stops and frees the pipeline. Pacing is pure arithmetic on an
injected clock, tested deterministically.

Knows nothing about gradio, WebRTC or the persona layer: it takes a `conditioning_at(t)`
callable and a `Pipeline`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pipelines.base import Pipeline, PipelineGone
from pipelines.conditioning import Character, Conditioning

log = logging.getLogger(__name__)

IDLE_CONSUMER_SECONDS = 10.0
"""Stop the worker when no frame has been asked for this long (the viewer is gone)."""
RETRY_SECONDS = 0.2
FPS_WINDOW_SECONDS = 2.0
STEP_SAFETY = 1.5
"""A step is started this many average step durations (plus STEP_MARGIN_SECONDS) before its
first frame is due: late enough to sample fresh directives, early enough not to stutter."""
STEP_MARGIN_SECONDS = 0.005
PHASE_WINDOW_FRAMES = 30
PHASE_MARGIN_SECONDS = 0.005
STEP_HISTORY = 120
"""Step durations kept for the chunk-time figures (p50/p95) shown to the visitor."""
"""Frames are scheduled to fall due this long before the consumer asks for them (its requests
jitter by about +-3 ms; a frame not yet due when asked for waits a whole frame more)."""


@dataclass(frozen=True)
class Frame:
    image: np.ndarray
    conditioning: Conditioning
    display_at: float


class FrameClock:
    """When each frame is due: frame n is shown at anchor + n / fps.

    If rendering falls behind real time, `catch_up` moves the anchor so the next frame is due
    when it can be ready instead of in the past (the stream slows down rather than
    fast-forwarding or dropping frames).
    """

    def __init__(self, fps: float, anchor: float) -> None:
        self.fps = fps
        self.anchor = anchor
        self.next_index = 0

    def display_time(self, index: int) -> float:
        return self.anchor + index / self.fps

    def catch_up(self, earliest: float) -> None:
        """Make the next frame due no earlier than `earliest`."""
        if self.display_time(self.next_index) < earliest:
            self.anchor = earliest - self.next_index / self.fps

    def take(self, count: int) -> list[float]:
        """Display times of the next `count` frames, which are now spoken for."""
        times = [self.display_time(self.next_index + i) for i in range(count)]
        self.next_index += count
        return times


class StepTimer:
    """A moving average of how long `pipeline.step` takes, and so how early to start one."""

    def __init__(self, weight: float = 0.2) -> None:
        self.weight = weight
        self.seconds: float | None = None

    def record(self, seconds: float) -> None:
        w = self.weight
        self.seconds = seconds if self.seconds is None else (1 - w) * self.seconds + w * seconds

    def start_by(self, due: float) -> float:
        """The latest time to start the step for a chunk whose first frame is due at `due`."""
        if self.seconds is None:  # nothing measured yet: start at once
            return float("-inf")
        return due - STEP_SAFETY * self.seconds - STEP_MARGIN_SECONDS


class PhaseLock:
    """Lines frame due times up with when the consumer asks for frames.

    The consumer (FastRTC's track) asks on its own clock; a frame that falls due just after
    one request waits in the queue for the next, up to a whole frame, and everything it shows
    was decided that much earlier. Over a window of handed-out frames this measures the least
    such wait (the consistent part, not the jitter) and offers it as slack: the frame clock
    moves later by that much, so frames fall due just before they are asked for.
    """

    def __init__(self, window: int = PHASE_WINDOW_FRAMES) -> None:
        self.window = window
        self._waits: list[float] = []

    def record(self, waited: float) -> float:
        """Record how long a handed-out frame waited; every `window` frames, return the slack
        to move the schedule by (0 until then)."""
        self._waits.append(waited)
        if len(self._waits) < self.window:
            return 0.0
        slack, self._waits = min(self._waits) - PHASE_MARGIN_SECONDS, []
        return max(slack, 0.0)


def newest_due(queue: deque[Frame], now: float) -> Frame | None:
    """Pop every frame whose display time has come; return the newest of them."""
    due = None
    while queue and queue[0].display_at <= now:
        due = queue.popleft()
    return due


class FpsMeter:
    """Frames handed out per second over a sliding window."""

    def __init__(self, window: float = FPS_WINDOW_SECONDS) -> None:
        self.window = window
        self._times: deque[float] = deque()

    def tick(self, now: float) -> None:
        self._times.append(now)
        while self._times and now - self._times[0] > self.window:
            self._times.popleft()

    def fps(self) -> float:
        if len(self._times) < 2 or self._times[-1] == self._times[0]:
            return 0.0
        return (len(self._times) - 1) / (self._times[-1] - self._times[0])


class StreamRunner:
    """Drives one pipeline for one viewer. `start()`, then `next_frame()` at display rate."""

    def __init__(
        self,
        pipeline: Pipeline,
        character: Character,
        conditioning_at: Callable[[float], Conditioning],
        *,
        clock: Callable[[], float] = time.monotonic,
        chunks_ahead: int = 1,
    ) -> None:
        self.pipeline = pipeline
        self.character = character
        self.conditioning_at = conditioning_at
        self.clock = clock
        self.spec = pipeline.spec
        self.frame_clock = FrameClock(self.spec.fps, clock())
        self.max_buffered = chunks_ahead * self.spec.chunk_frames
        self.showing: Frame | None = None
        self.error: str | None = None
        self.gone: str | None = None
        """Why the pipeline can never step again (`PipelineGone`): the stream must end."""
        self._queue: deque[Frame] = deque()
        self._lock = threading.Condition()
        self._stop = threading.Event()
        self._last_request = clock()
        self._meter = FpsMeter()
        self._step_timer = StepTimer()
        self._step_seconds: deque[float] = deque(maxlen=STEP_HISTORY)
        self._phase = PhaseLock()
        self._thread = threading.Thread(target=self._work, name="stream-runner", daemon=True)

    # -- consumer side (event loop) ------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self._stop.is_set()

    def next_frame(self) -> Frame | None:
        """The newest frame due now, or None when the last one should be repeated."""
        now = self.clock()
        with self._lock:
            self._last_request = now
            frame = newest_due(self._queue, now)
            if frame is not None:
                self.frame_clock.anchor += self._phase.record(now - frame.display_at)
            self._lock.notify_all()
        if frame is not None:
            self.showing = frame
            self._meter.tick(now)
        return frame

    def change_time(self) -> float:
        """When a change made now takes effect: one frame before the first frame not yet
        rendered, so that frame already shows the change under way (not its still start)."""
        with self._lock:
            first = max(self.frame_clock.display_time(self.frame_clock.next_index), self.clock())
        return first - 1.0 / self.spec.fps

    def fps(self) -> float:
        return self._meter.fps()

    def step_seconds(self) -> list[float]:
        """How long the last STEP_HISTORY steps took, oldest first."""
        return list(self._step_seconds)

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            self._lock.notify_all()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)

    # -- worker side ---------------------------------------------------------------------

    def _work(self) -> None:
        try:
            self.pipeline.reset(self.character)
            while not self._stop.is_set():
                if not self._wait_for_room():
                    break
                self._render_chunk()
        except PipelineGone as error:  # reset or a step: its worker died, with its state
            self.error = self.gone = str(error)
            log.warning("pipeline gone: %s", error)
        except Exception as error:  # reset failed: nothing to stream
            self.error = f"{type(error).__name__}: {error}"
            log.exception("stream runner failed to start")
        finally:
            self.pipeline.close()
            self._stop.set()
            log.info("stream runner for %s stopped", self.character.name)

    def _wait_for_room(self) -> bool:
        """Block until there is room for another chunk; False when it is time to stop."""
        with self._lock:
            while len(self._queue) >= self.max_buffered and not self._stop.is_set():
                if self.clock() - self._last_request > IDLE_CONSUMER_SECONDS:
                    log.info("no viewer for %.0f s; stopping", IDLE_CONSUMER_SECONDS)
                    return False
                self._lock.wait(timeout=0.5)
            return not self._stop.is_set()

    def _render_chunk(self) -> None:
        with self._lock:
            due = self.frame_clock.display_time(self.frame_clock.next_index)
        wait = self._step_timer.start_by(due) - self.clock()
        if wait > 0 and self._stop.wait(wait):
            return
        with self._lock:
            # Behind schedule: the chunk falls due when it will be ready, not before (frames
            # that were due before they existed would be dropped as stale on arrival).
            self.frame_clock.catch_up(self.clock() + (self._step_timer.seconds or 0.0))
            times = self.frame_clock.take(self.spec.chunk_frames)
        conditioning = [self.conditioning_at(t) for t in times]
        try:
            started = self.clock()
            images = self.pipeline.step(conditioning)
            took = self.clock() - started
            self._step_timer.record(took)
            self._step_seconds.append(took)
            self.error = None
        except PipelineGone:  # nothing to retry: the stream ends, saying why (in _work)
            raise
        except Exception as error:
            self.error = f"{type(error).__name__}: {error}"
            log.exception("pipeline step failed; retrying")
            self._stop.wait(RETRY_SECONDS)
            return
        with self._lock:
            self._queue.extend(
                Frame(image, c, t) for image, c, t in zip(images, conditioning, times, strict=True)
            )
