"""The live character state of one session: Directives in, per-frame Conditioning out.

Wraps the shared `Timeline` (the single home of how actions and expressions evolve) with a lock,
because the chat handler writes while the stream worker reads, and adds the mouth: it follows
the session's `SpeechSchedule`, the same schedule the audio track plays from, so each frame's
mouth shape is the one for the sound heard at that frame's display time. Knows nothing about
pipelines beyond the conditioning types.
"""

from __future__ import annotations

import threading

from persona.voice.schedule import SpeechSchedule
from pipelines.conditioning import Action, Conditioning, Expression, Timeline


class CharacterState:
    def __init__(self, t0: float = 0.0) -> None:
        self._timeline = Timeline(t0)
        self._lock = threading.Lock()
        self.speech = SpeechSchedule()

    def apply_action(self, action: Action, t: float) -> bool:
        """Start an action; False when it changes nothing (e.g. sit_down while seated)."""
        with self._lock:
            return self._timeline.set_action(action, t)

    def apply_expression(self, expression: Expression, t: float) -> bool:
        with self._lock:
            return self._timeline.set_expression(expression, t)

    def conditioning_at(self, t: float) -> Conditioning:
        mouth_open, mouth_shape = self.speech.mouth_at(t)
        with self._lock:
            return self._timeline.sample(t, mouth_open=mouth_open, mouth_shape=mouth_shape)

    def current(self, t: float) -> tuple[str, str]:
        """(action, expression) being shown at time t."""
        with self._lock:
            return self._timeline.current_action(t), self._timeline.expression
