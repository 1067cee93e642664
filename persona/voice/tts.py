"""Text to speech: the character's voice, with the mouth timeline of what it says.

The engine is hibari (Apache-2.0): a 7.9 MB ONNX voice inside its wheel, 24 kHz, about 0.04-0.08
of real time on one core here. It ships one voice ("heart"); a card picks speed and pitch in
`data.extensions["persona/voice"]`, and the pitch is moved by scaling the model's own
fundamental-frequency track before synthesis (the spectral envelope, and so the words, stay).
Knows nothing about playback or WebRTC: text in, `Speech` (samples and mouth track) out.
"""

from __future__ import annotations

import functools
import re
import threading
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from persona.directive import spoken
from persona.voice.mouth import MouthTrack, mouth_from_audio

VOICE_KEY = "persona/voice"
SAMPLE_RATE = 24_000
SILENCE_LEVEL = 0.01
"""Samples below this fraction of the peak count as silence when trimming."""
LEAD_IN_SECONDS = 0.03
PAUSE_AFTER_SECONDS = 0.2
"""Silence kept after each piece of speech: the breath between sentences."""
SPEECH_RMS = 0.08
"""Speech loudness (about -22 dBFS where it speaks)."""
PEAK_LIMIT = 0.95
"""No sample of speech goes louder than this (1.0 is where it would clip)."""
FIRST_CLAUSE_WORDS = 2
"""A reply's first clause or phrase is spoken on its own once it has this many words ("I'm
Bram," then the rest). End of speech -> first sound, p50 per page benchmark run: with 4,
1.54-1.66 s (median of five runs 1.62); with 2, 1.36-1.79 s (median of six 1.57). Runs vary
more than that, but the model writes ~55 ms a token under load, so each word not waited for
is time the visitor gets back."""


class VoiceError(RuntimeError):
    """The voice cannot speak here; the message says why."""


class VoiceSettings(BaseModel):
    """How a character sounds, from a card's `data.extensions["persona/voice"]`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    voice: str = Field(default="heart", description="A voice installed with the engine.")
    speed: float = Field(default=1.0, ge=0.5, le=2.0, description="1 is the voice's own pace.")
    pitch: float = Field(default=1.0, ge=0.5, le=1.6, description="Multiplies the voice's pitch.")


@dataclass(frozen=True)
class Speech:
    """One synthesised stretch of speech: mono float32 samples and the mouth that says it."""

    samples: np.ndarray
    sample_rate: int
    mouth: MouthTrack

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.sample_rate

    def write_wav(self, path: str | Path) -> None:
        write_wav(path, self.samples, self.sample_rate)


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int) -> None:
    """Mono float samples as a 16-bit WAV file."""
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm.tobytes())


def installed_voices() -> list[str]:
    """Voices that speak offline (inside the engine's wheel)."""
    from hibari.voices import VOICES

    return sorted(name for name, voice in VOICES.items() if voice.get("bundled"))


class Speaker:
    """One loaded voice engine, shared by every session (it is thread-safe behind a lock)."""

    def __init__(self, threads: int = 1) -> None:
        try:
            from hibari import Hibari
        except ImportError as error:
            raise VoiceError(f"the speech engine is not installed ({error.name})") from None
        self._engines: dict[str, object] = {}
        self._threads = threads
        self._factory = Hibari
        self._lock = threading.Lock()

    def _engine(self, voice: str):
        if voice not in installed_voices():
            raise VoiceError(
                f"unknown voice {voice!r}; installed here: {', '.join(installed_voices())}"
            )
        if voice not in self._engines:
            self._engines[voice] = self._factory(voice=voice, threads=self._threads)
        return self._engines[voice]

    def say(self, text: str, settings: VoiceSettings | None = None, seed: int = 0) -> Speech:
        """Speech for `text` (one or more sentences), with its mouth timeline."""
        from hibari import dsp

        settings = settings or VoiceSettings()
        with self._lock:
            engine = self._engine(settings.voice)
            rng = np.random.default_rng(seed)
            parts = []
            for phonemes in engine.phonemize(text):
                ids = engine.ids(phonemes)
                if len(ids) < 3:
                    continue
                feed = {
                    "ids": np.asarray([ids], np.int64),
                    "speed": np.asarray([settings.speed], np.float32),
                }
                lh, th, ln, lr, phi, f0 = (o[0] for o in engine.sess.run(None, feed))
                parts.append(dsp.synth(lh, th, ln, lr, phi, f0 * settings.pitch, rng))
        samples = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        samples = _trim_silence(_level(samples))
        return Speech(samples, SAMPLE_RATE, mouth_from_audio(samples, SAMPLE_RATE))


def _level(samples: np.ndarray) -> np.ndarray:
    """Every utterance at SPEECH_RMS where it speaks, unless a peak would pass PEAK_LIMIT.
    The engine's loudness varies with the pitch and the words: as it came, Bram (pitch 0.62)
    peaked at 1.8 and clipped in 8 of the benchmark's 20 sentences, and Mira spoke at a third
    of his level."""
    peak = float(np.abs(samples).max(initial=0.0))
    voiced = samples[np.abs(samples) > SILENCE_LEVEL * peak]
    if not len(voiced):
        return samples
    rms = float(np.sqrt(np.mean(voiced**2)))
    return samples * min(SPEECH_RMS / rms, PEAK_LIMIT / peak)


def _trim_silence(samples: np.ndarray) -> np.ndarray:
    """Without the engine's lead-in silence (~0.3 s, which would only delay the first word)
    and with at most PAUSE_AFTER_SECONDS of silence after the last word."""
    loud = np.flatnonzero(np.abs(samples) > SILENCE_LEVEL * max(np.abs(samples).max(), 1e-9))
    if not len(loud):
        return samples[:0].astype(np.float32)
    lead = round(LEAD_IN_SECONDS * SAMPLE_RATE)
    tail = round(PAUSE_AFTER_SECONDS * SAMPLE_RATE)
    return samples[max(loud[0] - lead, 0) : loud[-1] + tail].astype(np.float32)


class SentenceSplitter:
    """Cuts a reply that arrives in pieces into sentences to speak as soon as each is whole.
    The first piece may end at a clause (a comma after a few words) or before a phrase ("with
    a dry sense of humour") so the voice starts sooner. Stage directions (`*waves*`) are never
    spoken; nothing is cut inside one."""

    _END = re.compile(r"[.!?…]+[\"'”’)\]]*\s+")
    _CLAUSE = re.compile(r"[,;:—]\s+")
    _PHRASE = re.compile(
        r"\s+(?=(?:and|but|or|so|because|with|for|in|on|at|to|of|from|who|which|that|when|"
        r"while|where|if)\s)",
        re.IGNORECASE,
    )
    """Before a word that opens a phrase: where a long first sentence can pause naturally."""

    def __init__(self) -> None:
        self._text = ""
        self._started = False

    def push(self, text: str) -> list[str]:
        """Sentences (or a first clause) completed by `text`, spoken words only."""
        self._text += text
        ends = [m.end() for m in self._END.finditer(self._text)]
        if not self._started:  # the first clause or phrase, if before the first sentence end
            clause = next(
                (
                    m.end()
                    for pattern in (self._CLAUSE, self._PHRASE)
                    for m in pattern.finditer(self._text)
                    if len(spoken(self._text[: m.end()]).split()) >= FIRST_CLAUSE_WORDS
                ),
                None,
            )
            if clause is not None and clause < min(ends, default=len(self._text) + 1):
                ends.append(clause)
        ends = sorted(e for e in ends if self._text.count("*", 0, e) % 2 == 0)  # not in *...*
        if not ends:
            return []
        done, self._text = self._text[: ends[-1]], self._text[ends[-1] :]
        self._started = True
        return [s for s in (spoken(p) for p in _split_after(done, ends)) if s]

    def flush(self) -> list[str]:
        """What is left when the reply ends."""
        rest, self._text = spoken(self._text), ""
        return [rest] if rest else []


def _split_after(text: str, ends: list[int]) -> list[str]:
    starts = [0] + ends[:-1]
    return [text[a:b] for a, b in zip(starts, ends, strict=True)]


@functools.lru_cache(maxsize=1)
def shared_speaker() -> Speaker:
    """The process's voice engine, loaded once."""
    return Speaker()
