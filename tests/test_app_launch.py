"""How the app is started: its command line, the share link, the WebRTC relay."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

import app

ROOT = Path(__file__).resolve().parents[1]


def test_help_lists_every_option_and_setting() -> None:
    shown = subprocess.run(
        [sys.executable, "app.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert shown.returncode == 0, shown.stderr
    for option in ("--host", "--port", "--share", "PERSONA_PIPELINE", "PERSONA_BACKEND",
                   "PERSONA_MAX_STREAMS", "PERSONA_STREAM_SECONDS", "PERSONA_TURN_URLS",
                   "HF_TOKEN", "GRADIO_SHARE"):  # fmt: skip
        assert option in shown.stdout, option


@pytest.mark.slow
def test_a_share_link_without_internet_says_so_and_the_app_serves_on() -> None:
    from tests.browser.harness import health, running_app

    with running_app(GRADIO_SHARE="1") as (url, process):
        log = Path(process.log_path)  # type: ignore[attr-defined]
        deadline = time.monotonic() + 90
        while "could not create a share link" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        assert "serving on http://" in log.read_text()
        assert health(url)["status"] == "ok"


def test_a_turn_relay_of_your_own_is_offered_to_the_page(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert app._rtc_configuration() is None or app._relay_configured()
    monkeypatch.setenv("PERSONA_TURN_URLS", "turn:relay.example:3478, turns:relay.example:5349")
    monkeypatch.setenv("PERSONA_TURN_USERNAME", "persona")
    monkeypatch.setenv("PERSONA_TURN_CREDENTIAL", "secret")
    assert app._rtc_configuration() == {
        "iceServers": [
            {
                "urls": ["turn:relay.example:3478", "turns:relay.example:5349"],
                "username": "persona",
                "credential": "secret",
            }
        ]
    }
