"""When the character says what: speech laid out on the session's clock.

The one place that knows which sample of speech plays at which moment. The audio track reads
samples for "now" from it and the character state reads the mouth for each video frame's
display time from it, so sound and mouth come from the same schedule and stay together. A cut
(barge-in) silences both from that moment. Thread-safe: the conversation thread adds speech,
the media thread reads audio and the stream worker reads the mouth.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from persona.voice.tts import Speech


@dataclass(frozen=True)
class _Scheduled:
    speech: Speech
    start: float

    @property
    def end(self) -> float:
        return self.start + self.speech.seconds


class SpeechSchedule:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: list[_Scheduled] = []

    def add(self, speech: Speech, earliest: float) -> float:
        """Play `speech` after what is already queued, never before `earliest`; returns when it
        starts."""
        with self._lock:
            self._queue = [s for s in self._queue if s.end > earliest]  # nobody played them
            start = max([earliest] + [s.end for s in self._queue])
            self._queue.append(_Scheduled(speech, start))
            return start

    def end(self) -> float | None:
        """When the queued speech finishes (None when nothing is queued)."""
        with self._lock:
            return self._queue[-1].end if self._queue else None

    def speaking(self, t: float) -> bool:
        with self._lock:
            return any(s.start <= t < s.end for s in self._queue)

    def cut(self, t: float) -> bool:
        """Silence everything from `t` on (barge-in); True if something was still to be said."""
        with self._lock:
            cut = any(s.end > t for s in self._queue)
            self._queue = [s for s in self._queue if s.end <= t]
            return cut

    def mouth_at(self, t: float) -> tuple[float, str]:
        """(openness, shape) of the mouth at time `t`."""
        with self._lock:
            for scheduled in self._queue:
                if scheduled.start <= t < scheduled.end:
                    return scheduled.speech.mouth.at(t - scheduled.start)
        return 0.0, "rest"

    def audio(self, t: float, count: int, sample_rate: int) -> np.ndarray:
        """`count` samples of what plays from time `t` (silence where nothing does); speech that
        has finished playing is forgotten."""
        out = np.zeros(count, np.float32)
        with self._lock:
            self._queue = [s for s in self._queue if s.end > t]
            for scheduled in self._queue:
                speech = scheduled.speech
                assert speech.sample_rate == sample_rate, "one sample rate per session"
                first = round((t - scheduled.start) * sample_rate)
                begin, stop = max(first, 0), min(first + count, len(speech.samples))
                if begin < stop:
                    out[begin - first : stop - first] = speech.samples[begin:stop]
        return out
