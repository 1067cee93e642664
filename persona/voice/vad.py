"""Voice activity: when the visitor starts and stops talking, from a live 16 kHz stream.

Runs Silero VAD v6 (MIT), the ONNX file faster-whisper ships in its wheel, window by window
(32 ms) with its recurrent state carried across calls, so a stream is read as it arrives. A
start needs SPEECH_START_SECONDS of speech (a cough or a click is not a turn); an end needs
SILENCE_END_SECONDS of quiet, and a shorter pause (PAUSE_SECONDS) is reported on the way so the
utterance can be transcribed before the end is certain. Knows nothing about microphones or
WebRTC.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np

from persona.voice.stt import LISTEN_RATE

WINDOW = 512
"""Samples per VAD window at 16 kHz (32 ms), the model's own size."""
CONTEXT = 64
SPEECH_PROBABILITY = 0.5
QUIET_PROBABILITY = 0.35
SPEECH_START_SECONDS = 0.064
SILENCE_END_SECONDS = 0.5
PAUSE_SECONDS = 0.2
"""Quiet this long inside speech is a pause: the utterance so far can be transcribed early."""
PRE_ROLL_SECONDS = 0.3
"""Audio kept from before the detected start, so the first syllable is transcribed."""
MAX_UTTERANCE_SECONDS = 15.0


@dataclass(frozen=True)
class VoiceEvent:
    """`started` when speech begins; `paused` (with the utterance so far) when it goes quiet,
    `resumed` if it goes on after a pause; `ended` with the utterance's samples when it stops."""

    kind: str
    samples: np.ndarray | None = None


@functools.lru_cache(maxsize=1)
def _model():
    import onnxruntime
    from faster_whisper.vad import get_assets_path

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3
    path = os.path.join(get_assets_path(), "silero_vad_v6.onnx")
    return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])


class SpeechDetector:
    """Feed 16 kHz mono float samples as they arrive; get start and end events back."""

    def __init__(self) -> None:
        self._session = _model()
        self.reset()

    def reset(self) -> None:
        self._state = np.zeros((2, 1, 1, 128), np.float32)
        self._context = np.zeros(CONTEXT, np.float32)
        self._pending = np.zeros(0, np.float32)
        self._recent: list[np.ndarray] = []
        self._utterance: list[np.ndarray] = []
        self._speech_run = self._quiet_run = 0
        self.speaking = False

    def probability(self, window: np.ndarray) -> float:
        """Speech probability of one WINDOW of samples (advances the model's state)."""
        batch = np.concatenate([self._context, window])[None, :]
        probability, h, c = self._session.run(
            None, {"input": batch, "h": self._state[0], "c": self._state[1]}
        )
        self._state = np.stack([h, c])
        self._context = window[-CONTEXT:]
        return float(np.ravel(probability)[0])

    def feed(self, samples: np.ndarray) -> list[VoiceEvent]:
        events: list[VoiceEvent] = []
        self._pending = np.concatenate([self._pending, np.asarray(samples, np.float32)])
        windows_to_start = round(SPEECH_START_SECONDS * LISTEN_RATE / WINDOW)
        windows_to_end = round(SILENCE_END_SECONDS * LISTEN_RATE / WINDOW)
        windows_to_pause = round(PAUSE_SECONDS * LISTEN_RATE / WINDOW)
        pre_roll = round(PRE_ROLL_SECONDS * LISTEN_RATE / WINDOW)
        longest = round(MAX_UTTERANCE_SECONDS * LISTEN_RATE / WINDOW)
        while len(self._pending) >= WINDOW:
            window, self._pending = self._pending[:WINDOW], self._pending[WINDOW:]
            probability = self.probability(window)
            if not self.speaking:
                self._recent = (self._recent + [window])[-pre_roll - windows_to_start :]
                self._speech_run = self._speech_run + 1 if probability >= SPEECH_PROBABILITY else 0
                if self._speech_run >= windows_to_start:
                    self.speaking, self._utterance, self._quiet_run = True, self._recent, 0
                    events.append(VoiceEvent("started"))
                continue
            self._utterance.append(window)
            quiet_before = self._quiet_run
            self._quiet_run = self._quiet_run + 1 if probability < QUIET_PROBABILITY else 0
            if self._quiet_run == windows_to_pause:
                events.append(VoiceEvent("paused", np.concatenate(self._utterance)))
            elif self._quiet_run == 0 and quiet_before >= windows_to_pause:
                events.append(VoiceEvent("resumed"))
            if self._quiet_run >= windows_to_end or len(self._utterance) >= longest:
                events.append(VoiceEvent("ended", np.concatenate(self._utterance)))
                self.speaking, self._utterance, self._recent = False, [], []
                self._speech_run = 0
        return events
