"""The `openai` backend against a real OpenAI-compatible HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from persona.backends import make_backend
from persona.backends.base import BackendError, ReplyRequest
from persona.cards import default_cards
from persona.conversation import Conversation
from tests.servers.openai_compatible import OpenAICompatibleServer

REQUEST = ReplyRequest(system_prompt="You are Mira.", message="please wave", char_name="Mira")


@pytest.fixture(scope="module")
def server() -> Iterator[OpenAICompatibleServer]:
    with OpenAICompatibleServer() as s:
        yield s


@pytest.fixture
def script(server: OpenAICompatibleServer):  # type: ignore[no-untyped-def]
    server.script = type(server.script)()
    return server.script


def _backend(server: OpenAICompatibleServer, **options: object):  # type: ignore[no-untyped-def]
    return make_backend(
        "openai", base_url=server.base_url, api_key="sk-secret-test-key", timeout_s=1.0, **options
    )


def test_streams_action_first_then_dialogue(server, script) -> None:  # type: ignore[no-untyped-def]
    chunks = list(_backend(server).stream_reply(REQUEST))
    assert chunks[0].action == "wave"
    assert "".join(c.text for c in chunks) == "Hello there!"
    sent = script.requests[-1]
    assert sent["model"] == "tiny-test-model"  # the first model the server lists
    assert (
        sent["response_format"]["json_schema"]["schema"]["properties"]["action"]["enum"][0]
        == "idle"
    )
    assert sent["messages"][0] == {"role": "system", "content": "You are Mira."}


def test_falls_back_to_plain_json_when_schema_output_is_refused(server, script) -> None:  # type: ignore[no-untyped-def]
    script.refuse_response_format = True
    backend = _backend(server)
    assert [c.action for c in backend.stream_reply(REQUEST) if c.action] == ["wave"]
    assert backend.structured_output is False
    assert "response_format" not in script.requests[-1]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"status": 500}, "answered 500"),
        ({"status": 429}, "rate limited"),
        ({"delay_s": 3.0}, "timed out"),
        ({"reply": "Sure, waving now!"}, "did not answer"),
        ({"reply": '{"action": "nod", "expression": "happy", "dialogue": ""}'}, "empty reply"),
    ],
)
def test_failures_become_key_free_backend_errors(server, script, change, message) -> None:  # type: ignore[no-untyped-def]
    for key, value in change.items():
        setattr(script, key, value)
    start = time.monotonic()
    with pytest.raises(BackendError, match=message) as error:
        list(_backend(server).stream_reply(REQUEST))
    assert "sk-secret" not in str(error.value)
    assert time.monotonic() - start < 2.5


def test_refused_connection_fails_fast() -> None:
    backend = make_backend("openai", base_url="http://127.0.0.1:9/v1", model="m", timeout_s=1.0)
    with pytest.raises(BackendError, match="cannot reach"):
        list(backend.stream_reply(REQUEST))


def test_injected_labels_never_reach_a_pipeline(server, script) -> None:  # type: ignore[no-untyped-def]
    script.reply = '{"action": "rm -rf /", "expression": "evil grin", "dialogue": "ok"}'
    chunks = list(_backend(server).stream_reply(REQUEST))
    assert [c.action for c in chunks if c.action] == ["idle"]
    assert [c.expression for c in chunks if c.expression] == ["neutral"]


def test_conversation_falls_back_offline_when_the_stream_is_cut(server, script) -> None:  # type: ignore[no-untyped-def]
    script.cut_after = 2
    conversation = Conversation(
        default_cards()[0], _backend(server), fallback=make_backend("offline")
    )
    events = list(conversation.respond("please wave"))
    assert any(e.notice for e in events)
    assert events[-1].directive is not None


def test_cli_directive_with_the_openai_backend(server, script) -> None:  # type: ignore[no-untyped-def]
    env = {**os.environ, "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-x"}
    result = subprocess.run(
        [sys.executable, "-m", "persona", "directive", "hi", "--backend", "openai"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "dialogue": "Hello there!",
        "action": "wave",
        "expression": "happy",
    }
