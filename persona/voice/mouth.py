"""Mouth shapes from the sound itself: a speech waveform in, a viseme timeline out.

Works on any voice's audio (the TTS engine gives no phoneme timings), so the mouth follows what
is actually heard. Every 10 ms: how loud the sound is against the utterance's own peak sets how
open the mouth is; where the energy sits in the spectrum picks the shape (energy high above
1.8 kHz against 0.6-1.4 kHz is a spread "ee", little of it is a rounded "oo", hiss above
3.5 kHz is a fricative shown with teeth), and a short pause inside speech closes the lips.
Thresholds were read off the shipped voice saying "ooh", "ee", "ah", "sass" and similar words.
Knows nothing about playback, video or WebRTC (numpy only).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.conditioning import MouthShape

HOP_SECONDS = 0.01
WINDOW_SECONDS = 0.03
SILENCE_DB = -32.0
"""Quieter than this below the utterance's loud frames is silence."""
QUIET_DB = -55.0
"""And anything quieter than this (RMS ~0.002 of full scale) is silence however loud the rest."""
OPEN_RANGE_DB = 24.0
"""Loudness range from barely open (at SILENCE_DB) to fully open."""
PAUSE_SECONDS = 0.15
"""A silence this short inside speech is a closure (m, b, p), not a rest."""
MIN_SHAPE_SECONDS = 0.04
"""Shorter shapes are merged into their neighbour: they would flicker for under a video frame."""
SPREAD_ABOVE = -0.5  # log10 energy ratio 1.8-3.2 kHz / 0.6-1.4 kHz: "ee", "eh"
ROUND_BELOW = -1.2  # "oo", "oh", "w"
HISS_ABOVE = -1.0  # log10 energy ratio 3.5-8 kHz / 0.15-3.5 kHz: "s", "f", "t"
OPENNESS: dict[str, float] = {
    "rest": 0.0,
    "closed": 0.0,
    "teeth": 0.2,
    "round": 0.55,
    "wide": 0.6,
    "open": 1.0,
}
"""How far each shape opens the mouth at full loudness."""


@dataclass(frozen=True)
class MouthTrack:
    """What the mouth does over one utterance: one shape and openness per HOP_SECONDS."""

    shapes: tuple[MouthShape, ...]
    openness: tuple[float, ...]

    @property
    def seconds(self) -> float:
        return len(self.shapes) * HOP_SECONDS

    def at(self, t: float) -> tuple[float, MouthShape]:
        """(openness, shape) `t` seconds into the utterance; rest outside it."""
        index = int(t / HOP_SECONDS) if t >= 0 else -1
        if not 0 <= index < len(self.shapes):
            return 0.0, "rest"
        return self.openness[index], self.shapes[index]

    def changes(self) -> list[tuple[float, MouthShape]]:
        """[(t_seconds, shape)] at each change of shape, starting at 0."""
        timeline: list[tuple[float, MouthShape]] = []
        for index, shape in enumerate(self.shapes):
            if not timeline or timeline[-1][1] != shape:
                timeline.append((round(index * HOP_SECONDS, 3), shape))
        return timeline


def _frames(samples: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """(loudness in dB per hop, power spectrum per hop) over centred windows."""
    hop = round(HOP_SECONDS * sample_rate)
    window = round(WINDOW_SECONDS * sample_rate)
    count = int(np.ceil(len(samples) / hop))
    padded = np.pad(samples.astype(np.float32), (window // 2, window + count * hop))
    starts = np.arange(count) * hop
    frames = np.stack([padded[s : s + window] for s in starts]) if count else np.zeros((0, window))
    loudness = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-10)
    spectrum = np.abs(np.fft.rfft(frames * np.hanning(window), axis=1)) ** 2
    return loudness, spectrum


def mouth_from_audio(samples: np.ndarray, sample_rate: int) -> MouthTrack:
    """The mouth timeline of a mono float waveform."""
    loudness, spectrum = _frames(samples, sample_rate)
    if not len(loudness):
        return MouthTrack((), ())
    freqs = np.fft.rfftfreq(round(WINDOW_SECONDS * sample_rate), 1 / sample_rate)

    def band(low: float, high: float) -> np.ndarray:
        return spectrum[:, (freqs >= low) & (freqs < high)].sum(axis=1) + 1e-12

    spread = np.log10(band(1800, 3200) / band(600, 1400))
    hiss = np.log10(band(3500, 8000) / band(150, 3500))
    level = loudness - np.percentile(loudness, 95)
    speaking = (level > SILENCE_DB) & (loudness > QUIET_DB)
    openness = np.clip((level - SILENCE_DB) / OPEN_RANGE_DB, 0.0, 1.0)

    shapes: list[str] = []
    for index in range(len(level)):
        if not speaking[index]:
            shapes.append("rest")
        elif hiss[index] > HISS_ABOVE:
            shapes.append("teeth")
        elif spread[index] > SPREAD_ABOVE:
            shapes.append("wide")
        elif spread[index] < ROUND_BELOW:
            shapes.append("round")
        else:
            shapes.append("open")
    shapes = _close_short_pauses(shapes)
    shapes = _merge_short_runs(shapes, max(1, round(MIN_SHAPE_SECONDS / HOP_SECONDS)))
    amounts = tuple(
        round(float(openness[i] * OPENNESS[shape]), 3) for i, shape in enumerate(shapes)
    )
    return MouthTrack(tuple(shapes), amounts)  # type: ignore[arg-type]


def _runs(shapes: list[str]) -> list[list]:
    """[[shape, start, length], ...]"""
    runs: list[list] = []
    for index, shape in enumerate(shapes):
        if runs and runs[-1][0] == shape:
            runs[-1][2] += 1
        else:
            runs.append([shape, index, 1])
    return runs


def _close_short_pauses(shapes: list[str]) -> list[str]:
    """Rests shorter than PAUSE_SECONDS between sounds become closed lips."""
    pause = round(PAUSE_SECONDS / HOP_SECONDS)
    out = list(shapes)
    runs = _runs(shapes)
    for position, (shape, start, length) in enumerate(runs):
        inside = 0 < position < len(runs) - 1
        if shape == "rest" and inside and length <= pause:
            out[start : start + length] = ["closed"] * length
    return out


def _merge_short_runs(shapes: list[str], shortest: int) -> list[str]:
    """Runs shorter than `shortest` hops take the shape before them (rests are kept)."""
    out = list(shapes)
    for shape, start, length in _runs(shapes):
        if length < shortest and start > 0 and shape != "rest":
            out[start : start + length] = [out[start - 1]] * length
    return out
