"""The voice, measured: the engines on their own, then talking with the character in the page.

    python benchmarks/voice.py [--parts engines,page]

Prints one JSON object:
- engines: text-to-speech real-time factor (synthesis time / audio length, p50 over SENTENCES,
  the default voice and Bram's lowered one) and time to the first sentence's audio; speech
  recognition's real-time factor and load time; the word error rate of say -> listen round
  trips over SENTENCES; voice activity's reaction to the start of speech.
- page: the real app and headless Chromium with a fake microphone playing QUESTIONS (made by
  `say`, 12 s apart) while the puppet streams: end of the visitor's speech -> first sound of
  the answer in the page (p50/p95, from the page's own measurements of its microphone and of
  what it plays); barge-in (the visitor starts talking -> the character's last sound) over
  BARGE_INS, both as heard (the page ducks the voice the moment its microphone hears speech)
  and as the server's cut reaches the page (sound and mouth stop); the audio/video offset (audio later than the video is positive), found by
  cross-correlating the loudness the page plays with the mouth opening the page shows; the
  browser's frame rate while the character speaks and while the visitor does.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.figures import percentile
from persona.cards import default_cards
from persona.voice.stt import LISTEN_RATE, Transcriber
from persona.voice.tts import SAMPLE_RATE, VoiceSettings, shared_speaker, write_wav
from persona.voice.vad import SpeechDetector

SENTENCES = [
    "Could you please wave at me?",
    "My cat is sick today.",
    "Tell me about yourself.",
    "What did you have for breakfast this morning?",
    "I just got back from a long walk in the park.",
    "Do you ever get tired of the ocean?",
    "Please sit down and tell me a story.",
    "The weather has been strange all week.",
    "I think I left my keys at the office.",
    "What is the best trick you know?",
    "Can you turn around for me?",
    "My sister is visiting next weekend.",
    "I am learning to play the piano.",
    "Why do you like working at night?",
    "That sounds like a wonderful idea.",
    "Look at the stars tonight, they are so bright.",
    "I am a little nervous about tomorrow.",
    "Give me a thumbs up if you agree.",
    "How long have you been doing this?",
    "Thank you, that was very kind of you.",
]
QUESTIONS = [
    "Tell me about yourself.",
    "What do you do all day?",
    "Where do you live?",
    "Do you have any advice for me?",
    "What is your favourite memory?",
    "Tell me about your work.",
    "What makes you laugh?",
    "Have you ever been to the mountains?",
    "What would you do with a free day?",
    "Who taught you your craft?",
]
BARGE_INS = 6
GAP_SECONDS = 12.0


def _words(text: str) -> list[str]:
    return "".join(c.lower() if c.isalnum() or c in " '" else " " for c in text).split()


def _edits(reference: list[str], heard: list[str]) -> int:
    row = list(range(len(heard) + 1))
    for i, word in enumerate(reference, 1):
        previous, row[0] = row[0], i
        for j, other in enumerate(heard, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (word != other))
    return row[-1]


def _to_listen_rate(samples: np.ndarray) -> np.ndarray:
    times = np.arange(0, len(samples) / SAMPLE_RATE, 1 / LISTEN_RATE)
    return np.interp(times, np.arange(len(samples)) / SAMPLE_RATE, samples).astype(np.float32)


def part_engines() -> dict:
    speaker = shared_speaker()
    speaker.say("Warm up.")
    result: dict[str, object] = {}
    bram = next(card for card in default_cards() if card.name == "Bram").voice
    for name, settings in (("default", VoiceSettings()), ("bram", bram)):
        factors = []
        for sentence in SENTENCES:
            start = time.perf_counter()
            speech = speaker.say(sentence, settings)
            factors.append((time.perf_counter() - start) / speech.seconds)
        result[f"tts_rtf_{name}_p50"] = round(statistics.median(factors), 4)
    start = time.perf_counter()
    speaker.say(SENTENCES[3])
    result["tts_sentence_ms"] = round((time.perf_counter() - start) * 1000, 1)

    start = time.perf_counter()
    transcriber = Transcriber()
    result["stt_load_s"] = round(time.perf_counter() - start, 2)
    errors = words = 0
    factors, misheard = [], []
    for sentence in SENTENCES:
        audio = _to_listen_rate(speaker.say(sentence).samples)
        start = time.perf_counter()
        heard = transcriber.transcribe(audio)
        factors.append((time.perf_counter() - start) / (len(audio) / LISTEN_RATE))
        edits = _edits(_words(sentence), _words(heard))
        errors, words = errors + edits, words + len(_words(sentence))
        if edits:
            misheard.append([sentence, heard])
    result["stt_rtf_p50"] = round(statistics.median(factors), 3)
    result["word_error_rate"] = round(errors / words, 4)
    result["misheard"] = misheard

    reactions = []
    for sentence in SENTENCES[:10]:
        speech = _to_listen_rate(speaker.say(sentence).samples)
        begins = np.flatnonzero(np.abs(speech) > 0.02)[0] / LISTEN_RATE + 1.0
        stream = np.concatenate([np.zeros(LISTEN_RATE, np.float32), speech])
        detector = SpeechDetector()
        for at in range(0, len(stream), 320):  # 20 ms pieces, as the page's microphone sends
            if any(e.kind == "started" for e in detector.feed(stream[at : at + 320])):
                reactions.append((at + 320) / LISTEN_RATE - begins)
                break
    result["vad_start_ms_p50"] = round(1000 * statistics.median(reactions), 1)
    return result


def _conversation_wav(texts: list[str], path: Path, gap_s: float) -> Path:
    """The visitor's side: each text said, then silence until `gap_s` after it began."""
    speaker, pieces = shared_speaker(), [np.zeros(SAMPLE_RATE // 2, np.float32)]
    for text in texts:
        said = speaker.say(text).samples
        pieces += [said, np.zeros(max(0, round(gap_s * SAMPLE_RATE) - len(said)), np.float32)]
    write_wav(path, np.concatenate(pieces), SAMPLE_RATE)
    return path


def _spans(trace: list[tuple[float, float]], level: float, gap_ms: float) -> list[list[float]]:
    """[start, end] page times of sound above `level`, joining gaps shorter than `gap_ms`."""
    spans: list[list[float]] = []
    for t, rms in trace:
        if rms < level:
            continue
        if spans and t - spans[-1][1] <= gap_ms:
            spans[-1][1] = t
        else:
            spans.append([t, t])
    return spans


def _av_offset_ms(frames: list[dict], sound: list[tuple[float, float]]) -> float | None:
    """The lag (ms) of the played loudness behind the shown mouth opening that correlates
    best, over the stretches where the character speaks."""
    if len(frames) < 30 or len(sound) < 30:
        return None
    start, end = max(frames[0]["t"], sound[0][0]), min(frames[-1]["t"], sound[-1][0])
    grid = np.arange(start + 400, end - 400, 10.0)
    frame_times = np.array([f["t"] for f in frames])
    mouth = np.array([f["mouth"] for f in frames])[
        np.clip(np.searchsorted(frame_times, grid, side="right") - 1, 0, len(frames) - 1)
    ]
    times, levels = np.array([s[0] for s in sound]), np.array([s[1] for s in sound])

    def scores(lag: float) -> float:
        played = np.interp(grid + lag, times, levels)
        a, b = mouth - mouth.mean(), played - played.mean()
        return float((a * b).mean() / (a.std() * b.std() + 1e-12))

    lags = np.arange(-300, 301, 10.0)
    correlations = [scores(lag) for lag in lags]
    return float(lags[int(np.argmax(correlations))])


def part_page() -> dict:
    from tests.browser.harness import (
        PersonaPage,
        barge_in_ms,
        chromium,
        fake_microphone,
        running_app,
    )

    work = Path(tempfile.mkdtemp(prefix="persona-voice-"))
    result: dict[str, object] = {}
    with running_app(PERSONA_PIPELINE="puppet") as (url, _):
        wav = _conversation_wav(QUESTIONS, work / "questions.wav", GAP_SECONDS)
        with chromium(*fake_microphone(wav, url)) as browser:
            page = PersonaPage(browser, url)
            page.start()
            page.listen()
            page.page.evaluate(
                "window.__probe.frames.length = 0"  # keep the whole conversation's frames
            )
            began = page.now()
            page.talk()
            listening_fps = page.fps(1.5)  # the visitor's first question is being said
            page.page.wait_for_timeout(GAP_SECONDS * len(QUESTIONS) * 1000 - 1500)
            mic = page.sound(began, "mic")
            played = page.sound(began)
            frames = page.page.evaluate(f"window.__probe.frames.filter(f => f.t > {began})")
        questions = _spans(mic, 0.01, 400)
        answers = _spans(played, 0.01, 400)
        latencies = []
        for asked in questions:
            first = next((a[0] for a in answers if a[0] > asked[1]), None)
            if first is not None and first - asked[1] < GAP_SECONDS * 1000:
                latencies.append(first - asked[1])
        speaking_frames = [f for f in frames if any(a[0] <= f["t"] <= a[1] for a in answers)]
        spoken_ms = sum(a[1] - a[0] for a in answers)
        result.update(
            {
                "questions_said": len(questions),
                "answered": len(latencies),
                "end_of_speech_to_first_audio_ms_p50": percentile(latencies, 0.5),
                "end_of_speech_to_first_audio_ms_p95": percentile(latencies, 0.95),
                "av_offset_ms": _av_offset_ms(frames, played),
                "browser_fps_while_speaking": round(1000 * len(speaking_frames) / spoken_ms, 1)
                if spoken_ms
                else None,
                "browser_fps_while_listening": round(listening_fps, 1),
            }
        )

        barge_ins: dict[str, list[float]] = {"heard": [], "sound": []}
        for index in range(BARGE_INS):
            wav = _conversation_wav(["Wait, stop please."], work / f"stop{index}.wav", 4.0)
            with chromium(*fake_microphone(wav, url)) as browser:
                page = PersonaPage(browser, url)
                page.start()
                page.listen()
                page.page.fill("#chat-input textarea", "tell me a long story about your work")
                page.page.press("#chat-input textarea", "Enter")
                page.wait_for_sound(page.now(), timeout_s=40)
                page.page.wait_for_timeout(500)
                clicked = page.now()
                page.talk()
                page.page.wait_for_timeout(3000)
                spoke = next((t for t, rms in page.sound(clicked, "mic") if rms > 0.01), None)
                if spoke is None:
                    continue
                for source in ("heard", "sound"):
                    barge_ins[source].append(barge_in_ms(page.sound(clicked, source), spoke))
        for source, name in (("heard", "heard"), ("sound", "server_cut")):
            result[f"barge_in_{name}_ms_p50"] = percentile(barge_ins[source], 0.5)
            result[f"barge_in_{name}_ms_max"] = percentile(barge_ins[source], 1.0)
        result["barge_ins"] = len(barge_ins["heard"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--parts", default="engines,page")
    args = parser.parse_args()
    result: dict[str, object] = {}
    if "engines" in args.parts.split(","):
        result["engines"] = part_engines()
    if "page" in args.parts.split(","):
        result["page"] = part_page()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
