"""The embedded brain's hub model: downloaded once in the background, its progress shown, the
interpreter answering meanwhile. Against a local hub (`tests/servers/hub.py`) serving a tiny
chat model built in the test, through huggingface_hub's real download code."""

from __future__ import annotations

import importlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import persona.backends.download as download
from persona.backends.base import ReplyRequest
from persona.backends.download import HubDownload, downloads_under_way, hub_download
from persona.backends.embedded import EmbeddedBackend
from persona.backends.local_model import load_chat_model
from persona.backends.offline import OfflineBackend
from tests.servers.hub import LocalHub
from tests.tiny_chat_model import save_tiny_chat_model

REPO = "persona-test/tiny-chat"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_chat_model(tmp_path_factory.mktemp("tiny-chat"))


@pytest.fixture
def hub(tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalHub]:
    """The local hub, at ~5 s for the model, with huggingface_hub pointed at it and at an
    empty cache (its settings are read from the environment when it is imported)."""
    import huggingface_hub.constants

    with LocalHub(REPO, tiny_model) as server:
        server.bytes_per_second = server.total_bytes / 5
        monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        importlib.reload(huggingface_hub.constants)
        monkeypatch.setattr(download, "_downloads", {})
        try:
            yield server
        finally:
            monkeypatch.undo()
            importlib.reload(huggingface_hub.constants)


def _progress_seen(fetch: HubDownload) -> list[str]:
    seen = []
    while not fetch.wait(0.1):
        seen.append(fetch.progress().describe())
    return seen


def test_a_hub_model_downloads_in_the_background_with_its_progress(hub: LocalHub) -> None:
    fetch = hub_download(REPO)
    assert hub_download(REPO) is fetch  # one download, however many ask
    seen = _progress_seen(fetch)
    percents = [int(s.split(": ")[1].split("%")[0]) for s in seen if "%" in s]
    assert any(0 < p < 100 for p in percents), seen  # shown part way, not just at the ends
    assert percents == sorted(percents)
    assert seen[-1].endswith(f"of {hub.total_bytes / 1e6:.1f} MB")
    progress = fetch.progress()
    assert progress.error is None and progress.done_bytes == hub.total_bytes
    assert not downloads_under_way()  # the page stops showing it
    assert load_chat_model(progress.folder).tokenizer is not None  # type: ignore[arg-type]


def test_a_failed_download_says_why_and_is_tried_again(
    hub: LocalHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.fail = True
    fetch = hub_download(REPO)
    fetch.wait(30)
    [shown] = downloads_under_way()
    assert shown.describe().startswith("could not download tiny-chat: ")
    hub.fail = False
    monkeypatch.setattr(download, "RETRY_AFTER_SECONDS", 0.0)
    again = hub_download(REPO)
    assert again is not fetch
    again.wait(30)
    assert again.progress().folder is not None


def test_the_interpreter_answers_until_the_model_is_in_then_the_model_does(
    hub: LocalHub,
) -> None:
    backend = EmbeddedBackend(model=REPO, seed=0)
    backend.check()
    backend.preload()  # starts the download, does not wait for it
    request = ReplyRequest(
        system_prompt="You are Bram.", message="what is your name?", char_name="Bram"
    )
    first = list(backend.stream_reply(request))
    notices = [c.notice for c in first if c.notice]
    assert len(notices) == 1 and "not ready yet (downloading tiny-chat: " in notices[0]
    assert "".join(c.text for c in first)  # an answer all the same
    second = list(backend.stream_reply(request))
    assert not any(c.notice for c in second)  # said once per conversation
    hub_download(REPO).wait(30)
    deadline = time.monotonic() + 60
    while not (backend._model and backend._model.alive) and time.monotonic() < deadline:
        time.sleep(0.2)  # preload starts the model process once the files are in
    words = "".join(c.text for c in backend.stream_reply(request) if c.text)
    assert words and words != OfflineBackend.line(request, None, None)  # the model's own
    assert not any(c.notice for c in backend.stream_reply(request))
    backend.close()
