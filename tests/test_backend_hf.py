"""The `hf` backend's request building and streaming parse against a real local HTTP server.

`InferenceClient(base_url=...)` is pointed at the OpenAI-compatible test server on 127.0.0.1.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from persona.backends import make_backend
from persona.backends.base import BackendError, ReplyRequest
from tests.servers.openai_compatible import OpenAICompatibleServer

REQUEST = ReplyRequest(system_prompt="You are Mira.", message="please wave", char_name="Mira")
SECRET = "hf_secret_test_token"


@pytest.fixture(scope="module")
def server() -> Iterator[OpenAICompatibleServer]:
    with OpenAICompatibleServer() as s:
        yield s


@pytest.fixture(autouse=True)
def allow_loopback_inference(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests run with HF_HUB_OFFLINE=1; the only server reached here is on 127.0.0.1."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
def script(server: OpenAICompatibleServer):  # type: ignore[no-untyped-def]
    server.script = type(server.script)()
    return server.script


def _backend(server: OpenAICompatibleServer):  # type: ignore[no-untyped-def]
    return make_backend(
        "hf", base_url=server.base_url, model="tiny-test-model", token=SECRET, timeout_s=1.0
    )


def test_streams_action_first_then_dialogue(server, script) -> None:  # type: ignore[no-untyped-def]
    chunks = list(_backend(server).stream_reply(REQUEST))
    assert chunks[0].action == "wave"
    assert "".join(c.text for c in chunks) == "Hello there!"
    sent = script.requests[-1]
    assert sent["stream"] is True
    # huggingface_hub rewrites the json_schema format for its provider; the schema must survive
    assert '"required": ["action", "expression", "dialogue"]' in json.dumps(sent["response_format"])
    assert sent["messages"][-1] == {"role": "user", "content": "please wave"}


@pytest.mark.parametrize("status", [429, 500, 503])
def test_http_errors_become_key_free_backend_errors(server, script, status, caplog) -> None:  # type: ignore[no-untyped-def]
    script.status = status
    caplog.set_level(logging.DEBUG)
    with pytest.raises(BackendError) as raised:
        list(_backend(server).stream_reply(REQUEST))
    assert str(status) in str(raised.value)
    assert SECRET not in str(raised.value) and SECRET not in caplog.text


def test_refused_connection_fails_fast() -> None:
    backend = make_backend("hf", base_url="http://127.0.0.1:9/v1", model="m", timeout_s=1.0)
    with pytest.raises(BackendError):
        list(backend.stream_reply(REQUEST))


def test_check_names_the_missing_token(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from huggingface_hub import constants

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "token"))  # none saved
    with pytest.raises(BackendError, match="no HF_TOKEN"):
        make_backend("hf", model="m").check()
    make_backend("hf", model="m", token=SECRET).check()
