"""Talking with the character in the real page: Chromium's fake microphone plays a WAV made
by the character's own speech engine, over the real WebRTC connection."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from persona.voice.tts import shared_speaker, write_wav
from tests.browser.harness import (
    PersonaPage,
    barge_in_ms,
    chromium,
    fake_microphone,
    running_app,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _utterance(text: str, path: Path, *, lead_s: float = 0.5, tail_s: float = 3.0) -> Path:
    """A WAV of `text` between stretches of silence, as a visitor would say it."""
    speech = shared_speaker().say(text)
    rate = speech.sample_rate
    silence = [np.zeros(round(seconds * rate), np.float32) for seconds in (lead_s, tail_s)]
    write_wav(path, np.concatenate([silence[0], speech.samples, silence[1]]), rate)
    return path


@pytest.fixture(scope="module")
def app_url() -> Iterator[str]:
    with running_app(PERSONA_MAX_STREAMS="10") as (url, _):
        yield url


def _talking_page(browser: object, app_url: str) -> PersonaPage:
    page = PersonaPage(browser, app_url)
    page.start()
    page.listen()
    return page


def test_a_spoken_question_is_transcribed_and_answered_aloud_with_a_moving_mouth(
    app_url: str, tmp_path: Path
) -> None:
    wav = _utterance("Tell me about yourself.", tmp_path / "question.wav")
    with chromium(*fake_microphone(wav, app_url)) as browser:
        page = _talking_page(browser, app_url)
        page.talk()
        assert "Listening" in page.page.inner_text("#mic-btn")
        page.wait_for_messages(3, timeout_s=30)
        assert page.chat_messages()[1].lower().strip(" .") == "tell me about yourself"
        first_sound = page.wait_for_sound(since=0, timeout_s=30)
        page.page.wait_for_timeout(2500)
        assert page.loudest(first_sound) > 0.05  # the reply is heard
        closed = max(page.mouth_areas(first_sound - 2500, first_sound - 800))  # still quiet
        talking = page.mouth_areas(first_sound - 50, first_sound + 2500)
        assert closed > 0 and sum(area > 1.5 * closed for area in talking) >= 5  # seen said
        assert page.connected() and "live" in page.status()


def test_talking_over_the_character_cuts_it_off(app_url: str, tmp_path: Path) -> None:
    wav = _utterance("Wait, stop please.", tmp_path / "interrupt.wav", lead_s=0.2)
    with chromium(*fake_microphone(wav, app_url)) as browser:
        page = _talking_page(browser, app_url)
        page.page.fill("#chat-input textarea", "tell me a long story about your theatre days")
        page.page.press("#chat-input textarea", "Enter")
        talking = page.wait_for_sound(since=page.now(), timeout_s=30)
        page.page.wait_for_timeout(300)
        clicked = page.now()
        page.talk()  # the fake microphone starts saying its line now
        page.page.wait_for_function(
            "[...document.querySelectorAll('#chat .message')]"
            ".some(m => m.textContent.includes('cut off'))",
            timeout=15_000,
        )
        page.page.wait_for_timeout(1500)
        assert talking < clicked
        spoke = next(t for t, rms in page.sound(clicked, "mic") if rms > 0.02)
        # the page silences the voice itself at once; the server's cut (mouth included)
        # follows (benchmarks/voice.py measures both finely)
        assert barge_in_ms(page.sound(clicked, "heard"), spoke) < 500
        assert barge_in_ms(page.sound(clicked), spoke) < 1000
        page.wait_for_messages(5, timeout_s=30)  # what the visitor said is answered next
        assert "stop" in page.chat_messages()[3].lower()


def test_without_a_microphone_the_page_says_so_and_typing_works(app_url: str) -> None:
    with chromium() as browser:  # the app's plain-http address: no microphone API at all
        page = PersonaPage(browser, app_url)
        page.start()
        page.page.click("#mic-btn")
        page.page.wait_for_selector("#voice-note:has-text('No microphone')", timeout=10_000)
        page.send("please wave", "action: wave")
        assert page.connected()


def test_mute_silences_the_character_and_unmute_brings_it_back(app_url: str) -> None:
    with chromium() as browser:
        page = PersonaPage(browser, app_url)
        page.start()
        muted = "document.querySelector('#persona-video video').muted"
        page.page.wait_for_function(f"!{muted}")  # the character's sound plays
        page.page.click("#mute-btn")
        assert page.page.evaluate(muted) is True
        assert page.page.inner_text("#mute-btn") == "Unmute"
        page.page.click("#mute-btn")
        assert page.page.evaluate(muted) is False


AUTOPLAY_POLICY = """
(() => {
  // Chromium's autoplay policy as a page without a real click meets it: unmuted playback is
  // refused until the visitor clicks. (Playwright cannot reproduce the real state: every call
  // it makes into the page counts as user activation.)
  const play = HTMLMediaElement.prototype.play;
  let clicked = false;
  document.addEventListener('click', (event) => { clicked ||= event.isTrusted; }, true);
  HTMLMediaElement.prototype.play = function () {
    if (this.muted || clicked) return play.call(this);
    return Promise.reject(new DOMException("play() failed because the user didn't interact "
      + "with the document first.", "NotAllowedError"));
  };
  const autoplay = Object.getOwnPropertyDescriptor(HTMLMediaElement.prototype, "autoplay");
  Object.defineProperty(HTMLMediaElement.prototype, "autoplay", {
    get() { return autoplay.get.call(this); },
    set(on) { autoplay.set.call(this, on && (this.muted || clicked)); },  // refused alike
  });
})();
"""


def test_sound_held_back_by_autoplay_policy_offers_click_to_unmute(app_url: str) -> None:
    with chromium() as browser:
        page = PersonaPage(browser, app_url, init_scripts=[AUTOPLAY_POLICY])
        page.page.evaluate("document.querySelector('#start-btn').click()")  # not a real click
        page.page.wait_for_selector("#mute-btn:has-text('Click to unmute')", timeout=15_000)
        assert "held back the sound" in page.page.inner_text("#voice-note")
        playing = "(() => { const v = document.querySelector('#persona-video video');"
        page.page.wait_for_function(f"{playing} return !v.paused && v.muted; }})()")
        page.page.click("#mute-btn")  # a real click: sound allowed now
        page.page.wait_for_function(f"{playing} return !v.paused && !v.muted; }})()")
