"""Recordings: real H.264/AAC files written with PyAV, their caps and their clean-up."""

from __future__ import annotations

import av
import numpy as np
import pytest

from ui import recording as recording_module
from ui.recording import Recording, RecordingError

RATE = 24_000


def _tone(level: float) -> np.ndarray:
    t = np.arange(RATE // 50) / RATE
    return (np.sin(2 * np.pi * 440 * t) * level * 32767).astype(np.int16)


def _record(recording: Recording, seconds: float, *, sound_until: float = 0.0) -> None:
    """Feed frames (30 a second, each as bright as its number) and 20 ms slices of sound (a
    tone until `sound_until`, then silence) in time order, as the media connection would."""
    frames = [(i / 30, "frame") for i in range(round(seconds * 30))]
    slices = [(k / 50, "sound") for k in range(round(seconds * 50))]
    for t, kind in sorted(frames + slices):
        if kind == "frame":
            recording.add_frame(np.full((64, 96, 3), round(t * 30) % 250, np.uint8), 50 + t)
        else:
            recording.add_sound(_tone(level=0.25 if t < sound_until else 0), 50 + t)
        recording.finished.wait(0.001)  # let the encoder thread run, as real time would


def _read(recording: Recording) -> tuple[list[np.ndarray], np.ndarray, float]:
    with av.open(str(recording.path)) as container:
        frames = [f.to_ndarray(format="gray") for f in container.decode(video=0)]
    with av.open(str(recording.path)) as container:
        sound = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
        duration = container.duration / 1e6
    return frames, sound, duration


def test_a_recording_holds_the_frames_and_sound_in_time() -> None:
    recording = Recording("Bram O'Neil", RATE)
    _record(recording, 2.0, sound_until=1.0)
    recording.stop()
    assert recording.finished.wait(10)
    try:
        assert recording.file == recording.path  # written whole
        assert recording.path.name.startswith("Bram-O-Neil-") and recording.path.suffix == ".mp4"
        frames, sound, duration = _read(recording)
        assert recording.dropped == 0
        assert len(frames) == 60 and abs(duration - 2.0) < 0.1
        assert frames[0].shape == (64, 96)
        assert abs(float(frames[45].mean()) - 45) < 4  # the 45th frame is still the 45th
        loud = [float(np.sqrt(np.mean(s**2))) for s in np.array_split(sound, 20)]  # 0.1 s each
        assert min(loud[1:9]) > 0.1 and max(loud[11:]) < 0.01  # the tone stops at 1 s
    finally:
        recording.delete()
    assert not recording.folder.exists() and recording.file is None


def test_a_recording_stops_itself_at_its_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recording_module, "RECORDING_MAX_SECONDS", 1.0)
    recording = Recording("Juno", RATE)
    _record(recording, 2.0)
    assert recording.full
    recording.stop()
    recording.finished.wait(10)
    try:
        frames, _, duration = _read(recording)
        assert len(frames) == 30 and duration < 1.1
    finally:
        recording.delete()


def test_no_recording_starts_once_the_server_space_is_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = Recording("Mira", RATE)
    _record(first, 0.5)
    first.stop()
    first.finished.wait(10)
    monkeypatch.setattr(recording_module, "RECORDINGS_MAX_BYTES", first.path.stat().st_size)
    try:
        with pytest.raises(RecordingError, match="no room"):
            Recording("Mira", RATE)
    finally:
        first.delete()
