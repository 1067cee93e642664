"""The voice engines on their real shipped models: speech out, mouth shapes, speech in."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from persona.backends.embedded import EmbeddedBackend
from persona.cards import CardError, default_cards, parse_card
from persona.voice.mouth import mouth_from_audio
from persona.voice.schedule import SpeechSchedule
from persona.voice.stt import LISTEN_RATE, SHORT_WINDOW_SECONDS, read_audio, shared_transcriber
from persona.voice.tts import (
    PEAK_LIMIT,
    SAMPLE_RATE,
    SentenceSplitter,
    Speech,
    VoiceError,
    VoiceSettings,
    shared_speaker,
)
from persona.voice.vad import SpeechDetector
from tests.markers import needs_shipped_model
from ui.session import Session


def _to_listen_rate(samples: np.ndarray) -> np.ndarray:
    """24 kHz -> 16 kHz by linear interpolation (good enough for these checks)."""
    times = np.arange(0, len(samples) / SAMPLE_RATE, 1 / LISTEN_RATE)
    return np.interp(times, np.arange(len(samples)) / SAMPLE_RATE, samples).astype(np.float32)


def _pitch(samples: np.ndarray) -> float:
    """Median autocorrelation pitch over voiced 40 ms windows, Hz."""
    size, found = round(0.04 * SAMPLE_RATE), []
    loud = np.abs(samples).max()
    for start in range(0, len(samples) - size, size):
        window = samples[start : start + size]
        if np.sqrt(np.mean(window**2)) < 0.1 * loud:
            continue
        corr = np.correlate(window, window, "full")[size - 1 :]
        low, high = SAMPLE_RATE // 400, SAMPLE_RATE // 60
        found.append(SAMPLE_RATE / (low + int(np.argmax(corr[low:high]))))
    return float(np.median(found))


def test_speech_has_sound_and_a_moving_mouth() -> None:
    speech = shared_speaker().say("Hello there! Would you like to see a magic trick?")
    assert speech.sample_rate == SAMPLE_RATE
    assert 1.5 < speech.seconds < 6
    assert np.sqrt(np.mean(speech.samples**2)) > 0.02  # audible
    assert abs(speech.mouth.seconds - speech.seconds) < 0.02
    shapes = [shape for _, shape in speech.mouth.changes()]
    assert len(set(shapes)) >= 4 and len(shapes) >= 8
    # no lead-in silence: the first word is heard at once
    assert np.abs(speech.samples[: round(0.1 * SAMPLE_RATE)]).max() > 0.05


def test_mouth_shapes_follow_the_vowels() -> None:
    speaker = shared_speaker()

    def main_shape(word: str) -> str:
        track = speaker.say(word).mouth
        voiced = [s for s, o in zip(track.shapes, track.openness, strict=True) if o > 0.3]
        return max(set(voiced), key=voiced.count)

    assert main_shape("Eee.") == "wide"
    assert main_shape("Ooh.") == "round"
    assert main_shape("Ah.") == main_shape("Hot.") == "open"
    silence = mouth_from_audio(np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE)
    assert set(silence.shapes) == {"rest"}


def test_the_card_voice_sets_pitch_and_pace() -> None:
    speaker, text = shared_speaker(), "The lamp has to be lit every evening."
    plain = speaker.say(text)
    low = speaker.say(text, VoiceSettings(pitch=0.65))
    fast = speaker.say(text, VoiceSettings(speed=1.4))
    assert _pitch(low.samples) < 0.8 * _pitch(plain.samples)
    assert fast.seconds < 0.85 * plain.seconds
    with pytest.raises(VoiceError, match="unknown voice"):
        speaker.say(text, VoiceSettings(voice="nobody"))
    bram = next(c for c in default_cards() if c.name == "Bram")
    assert bram.voice.pitch < 1.0  # an elderly man does not speak in the default voice


def test_no_card_voice_clips_and_all_speak_at_a_like_level() -> None:
    """A lowered pitch made the engine louder: Bram's voice clipped (peaks up to 1.8), and
    spoke at three times Mira's level."""
    levels = {}
    for card in default_cards():
        said = [shared_speaker().say(text, card.voice).samples for text in _CLIPPED_BEFORE]
        assert max(float(np.abs(s).max()) for s in said) <= PEAK_LIMIT, card.name
        levels[card.name] = float(np.median([np.sqrt(np.mean(s**2)) for s in said]))
    assert max(levels.values()) < 1.5 * min(levels.values()), levels


_CLIPPED_BEFORE = [  # Bram's peaks were 1.8, 1.73 and 1.33
    "How long have you been doing this?",
    "Look at the stars tonight, they are so bright.",
    "Please sit down and tell me a story.",
]


def test_a_card_with_a_bad_voice_is_refused_clearly() -> None:
    card = {
        "spec": "chara_card_v2",
        "data": {"name": "X", "extensions": {"persona/voice": {"pitch": 9}}},
    }
    with pytest.raises(CardError, match="persona/voice"):
        parse_card(json.dumps(card).encode())


def test_what_is_said_is_heard_back() -> None:
    speaker, transcriber = shared_speaker(), shared_transcriber()
    for text in ("Could you please wave at me?", "My cat is sick today."):
        heard = transcriber.transcribe(_to_listen_rate(speaker.say(text).samples))
        assert heard.lower().strip(".?! ") == text.lower().strip(".?! ")
    assert transcriber.transcribe(np.zeros(LISTEN_RATE, np.float32)) == ""
    hiss = np.random.default_rng(0).normal(0, 0.1, 2 * LISTEN_RATE).astype(np.float32)
    assert transcriber.transcribe(hiss) == ""


def test_a_long_utterance_is_heard_whole() -> None:
    """Past the short window (SHORT_WINDOW_SECONDS) Whisper reads its usual 30 s."""
    speaker = shared_speaker()
    said = [_to_listen_rate(speaker.say(t).samples) for t in ("My cat is sick.", "Tell me a joke.")]
    gap = np.zeros(round(SHORT_WINDOW_SECONDS * LISTEN_RATE), np.float32)
    heard = shared_transcriber().transcribe(np.concatenate([said[0], gap, said[1]]))
    assert heard.lower().replace(".", "") == "my cat is sick tell me a joke"


def test_voice_activity_finds_the_start_and_end_of_an_utterance() -> None:
    speech = _to_listen_rate(shared_speaker().say("Hello, can you hear me?").samples)
    silence = np.zeros(LISTEN_RATE, np.float32)
    stream = np.concatenate([silence, speech, silence])
    detector, events = SpeechDetector(), []
    for start in range(0, len(stream), 320):  # 20 ms pieces, as a microphone delivers them
        events += [(start / LISTEN_RATE, e) for e in detector.feed(stream[start : start + 320])]
    kinds = [e.kind for _, e in events]
    assert kinds[0] == "started" and kinds[-1] == "ended" and kinds.count("ended") == 1
    assert kinds[-2] == "paused"  # reported before the end is certain
    for kind, following in itertools.pairwise(kinds):
        assert kind != "paused" or following in ("resumed", "ended")
    paused, ended = events[-2][1].samples, events[-1][1].samples
    assert np.array_equal(ended[: len(paused)], paused)  # only quiet came after the pause
    assert np.abs(ended[len(paused) :]).max() < 0.01
    started_at, ended_at = events[0][0], events[-1][0]
    assert 1.0 < started_at < 1.3  # speech begins at 1.0 s: noticed within 300 ms
    assert ended_at < 1.0 + len(speech) / LISTEN_RATE + 1.0
    utterance = ended
    assert abs(len(utterance) / LISTEN_RATE - len(speech) / LISTEN_RATE) < 1.0
    noise = np.random.default_rng(0).normal(0, 0.01, 3 * LISTEN_RATE).astype(np.float32)
    assert SpeechDetector().feed(noise) == []  # hiss is not a visitor talking


def test_schedule_plays_speech_in_order_and_a_cut_silences_it() -> None:
    one = Speech(
        np.full(2400, 0.5, np.float32),
        SAMPLE_RATE,
        mouth_from_audio(np.full(2400, 0.5, np.float32), SAMPLE_RATE),
    )
    schedule = SpeechSchedule()
    assert schedule.add(one, 10.0) == 10.0
    assert schedule.add(one, 10.0) == pytest.approx(10.1)  # after the first, never on top
    assert schedule.speaking(10.15) and schedule.end() == pytest.approx(10.2)
    audio = schedule.audio(9.95, 2400, SAMPLE_RATE)
    assert audio[:1200].max() == 0 and audio[1200:].min() == 0.5
    assert schedule.mouth_at(10.05)[0] > 0
    assert schedule.cut(10.05)
    assert schedule.audio(10.05, 480, SAMPLE_RATE).max() == 0
    assert schedule.mouth_at(10.06) == (0.0, "rest")
    assert not schedule.cut(10.06)


def test_sentences_are_spoken_as_soon_as_they_are_whole() -> None:
    splitter = SentenceSplitter()
    assert splitter.push("*smi") == []
    assert splitter.push("les. * Hello") == []
    assert splitter.push(" there! How are ") == ["Hello there!"]
    assert splitter.push("you? Fine") == ["How are you?"]
    assert splitter.flush() == ["Fine"]
    assert splitter.flush() == []
    clauses = SentenceSplitter()  # the voice starts at the first clause of a few words
    assert clauses.push("Well, my dear friend, I") == ["Well, my dear friend,"]
    assert clauses.push(" will, I promise. Then, later") == ["I will, I promise."]
    short = SentenceSplitter()  # two words are enough to begin with
    assert short.push("I'm Bram, a stage") == ["I'm Bram,"]
    phrases = SentenceSplitter()  # or before a phrase, in a long first sentence
    assert phrases.push("I'm a stage magician with a dry") == ["I'm a stage magician"]
    assert phrases.push(" wit with a smile. ") == ["with a dry wit with a smile."]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "persona", *args], capture_output=True, text=True, timeout=120
    )


def test_say_and_listen_command_lines(tmp_path: Path) -> None:
    out = tmp_path / "reply.wav"
    said = _cli("say", "Good evening, and welcome to the show.", "--out", str(out))
    assert said.returncode == 0, said.stderr
    result = json.loads(said.stdout)
    assert result["duration_s"] == pytest.approx(len(read_audio(out)) / LISTEN_RATE, abs=0.05)
    assert result["mouth"][0] == [0.0, result["mouth"][0][1]] and len(result["mouth"]) > 5
    heard = _cli("listen", str(out))
    assert heard.returncode == 0, heard.stderr
    assert json.loads(heard.stdout)["text"].lower().startswith("good evening")
    bad = _cli("listen", str(tmp_path / "missing.wav"))
    assert bad.returncode != 0 and "missing.wav" in bad.stderr and not bad.stdout
    voice = _cli("say", "Hi.", "--out", str(out), "--voice", "nobody")
    assert voice.returncode != 0 and "unknown voice" in voice.stderr


@needs_shipped_model
def test_a_pause_lets_the_model_read_the_visitor_before_their_turn_ends() -> None:
    session = Session("puppet", "embedded")
    backend = session.backend
    assert isinstance(backend, EmbeddedBackend)
    model = backend._model_process()
    session.expect("Where do you live")

    def read_ahead() -> str:
        return model.tokenizer.decode(model.cached_ids(backend._context))

    deadline = time.monotonic() + 30
    while "Where do you live" not in read_ahead() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "Where do you live" in read_ahead()
    said = _to_listen_rate(shared_speaker().say("Where do you live?").samples)
    assert session.hear(said) == "Where do you live?"
    deadline = time.monotonic() + 30
    while not (session._last_turn and session._last_turn.done.is_set()):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert session.chat_history()[-1]["content"]  # answered
