"""The live character state of one session: Directives in, per-frame Conditioning out.

Wraps the shared `Timeline` (the single home of how actions and expressions evolve) with a lock,
because the chat handler writes while the stream worker reads, and adds speech: while a reply
is being "spoken" the mouth moves (a syllable-rate viseme) for a time proportional to its
length. Knows nothing about pipelines beyond the conditioning types.
"""

from __future__ import annotations

import math
import threading

from pipelines.conditioning import Action, Conditioning, Expression, Timeline

SECONDS_PER_WORD = 0.28
SYLLABLES_PER_SECOND = 4.5


class CharacterState:
    def __init__(self, t0: float = 0.0) -> None:
        self._timeline = Timeline(t0)
        self._lock = threading.Lock()
        self._speech_start = self._speech_end = t0

    def apply_action(self, action: Action, t: float) -> bool:
        """Start an action; False when it changes nothing (e.g. sit_down while seated)."""
        with self._lock:
            return self._timeline.set_action(action, t)

    def apply_expression(self, expression: Expression, t: float) -> bool:
        with self._lock:
            return self._timeline.set_expression(expression, t)

    def speak(self, text: str, t: float) -> None:
        """Move the mouth for as long as `text` takes to say, starting now (or extending)."""
        seconds = SECONDS_PER_WORD * len(text.split())
        with self._lock:
            if t > self._speech_end:
                self._speech_start, self._speech_end = t, t + seconds
            else:
                self._speech_end += seconds

    def mouth_open(self, t: float) -> float:
        if not self._speech_start <= t < self._speech_end:
            return 0.0
        phase = (t - self._speech_start) * SYLLABLES_PER_SECOND
        return 0.25 + 0.55 * abs(math.sin(math.pi * phase))

    def conditioning_at(self, t: float) -> Conditioning:
        with self._lock:
            return self._timeline.sample(t, mouth_open=self.mouth_open(t))

    def current(self, t: float) -> tuple[str, str]:
        """(action, expression) being shown at time t."""
        with self._lock:
            return self._timeline.current_action(t), self._timeline.expression
