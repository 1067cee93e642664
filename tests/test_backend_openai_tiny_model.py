"""The `openai` backend against an OpenAI-compatible server that runs a real (tiny, random) model.

The model is built here and answers with nonsense, as a badly prompted small local model
would: the persona must still end up with a valid Directive, through validation and the
offline fallback, in the library and on the command line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from persona.backends import make_backend
from persona.backends.base import BackendError, ReplyRequest
from persona.cards import default_cards
from persona.conversation import Conversation
from persona.directive import Directive
from tests.servers.local_model import LocalChatModel
from tests.servers.openai_compatible import OpenAICompatibleServer
from tests.tiny_chat_model import save_tiny_chat_model


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenAICompatibleServer]:
    path = save_tiny_chat_model(tmp_path_factory.mktemp("tiny-random-llama"))
    with OpenAICompatibleServer(model=LocalChatModel(path)) as s:
        yield s


def test_the_backend_rejects_the_models_nonsense(server: OpenAICompatibleServer) -> None:
    backend = make_backend("openai", base_url=server.base_url, timeout_s=5.0)
    request = ReplyRequest(system_prompt="You are Mira.", message="please wave", char_name="Mira")
    with pytest.raises(BackendError, match="did not answer with the Directive JSON"):
        list(backend.stream_reply(request))
    sent = server.script.requests[-1]
    assert sent["model"] == server.model_name  # the first (only) model the server lists
    assert sent["messages"][-1] == {"role": "user", "content": "please wave"}
    assert server.script.replies[-1].strip()  # the model really generated something


def test_conversation_still_yields_a_valid_directive(server: OpenAICompatibleServer) -> None:
    backend = make_backend("openai", base_url=server.base_url, timeout_s=5.0)
    conversation = Conversation(default_cards()[0], backend, fallback=make_backend("offline"))
    events = list(conversation.respond("please wave"))
    notices = [e.notice for e in events if e.notice]
    assert notices and "openai backend failed" in notices[0]
    directive = events[-1].directive
    assert directive is not None and directive.action == "wave"  # the offline reading
    assert directive.dialogue and directive.dialogue not in server.script.replies
    assert conversation.history[-1].content == directive.dialogue


def test_cli_directive_against_the_model_server(server: OpenAICompatibleServer) -> None:
    env = {**os.environ, "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-x"}
    env.pop("PERSONA_LLM_MODEL", None)
    result = subprocess.run(
        [sys.executable, "-m", "persona", "directive", "please wave", "--backend", "openai"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    directive = Directive.model_validate(json.loads(result.stdout))
    assert directive.action == "wave" and directive.dialogue
    assert "notice: The openai backend failed" in result.stderr
