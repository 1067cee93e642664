"""The conversation manager, the character state and the `python -m persona` command line."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from persona.backends import make_backend
from persona.backends.base import Backend, BackendError, ReplyChunk, ReplyRequest
from persona.cards import default_cards
from persona.conversation import (
    ACTION_MEANINGS,
    EXPRESSION_MEANINGS,
    Conversation,
    build_system_prompt,
)
from persona.directive import ACTIONS, EXPRESSIONS, Directive
from persona.state import CharacterState
from persona.voice.tts import shared_speaker


class ScriptedBackend(Backend):
    """A real Backend that replays queued chunks (or raises) and records its requests."""

    name = "scripted"

    def __init__(self, *replies: list[ReplyChunk | Exception]) -> None:
        self.replies = list(replies)
        self.requests: list[ReplyRequest] = []

    def stream_reply(self, request: ReplyRequest) -> Iterator[ReplyChunk]:
        self.requests.append(request)
        for item in self.replies.pop(0):
            if isinstance(item, Exception):
                raise item
            yield item


@pytest.fixture
def card():  # type: ignore[no-untyped-def]
    return default_cards()[0]


def test_vocabulary_meanings_cover_the_vocabulary() -> None:
    assert list(ACTION_MEANINGS) == list(ACTIONS)
    assert list(EXPRESSION_MEANINGS) == list(EXPRESSIONS)


def test_system_prompt_uses_the_card_and_lists_the_vocabulary(card) -> None:  # type: ignore[no-untyped-def]
    prompt = build_system_prompt(card, "Sam")
    assert card.name in prompt and "{{" not in prompt
    assert all(f"- {a}:" in prompt for a in ACTIONS)
    assert all(f"- {e}:" in prompt for e in EXPRESSIONS)


def test_action_arrives_before_dialogue_and_directive_is_last(card) -> None:  # type: ignore[no-untyped-def]
    backend = ScriptedBackend(
        [
            ReplyChunk(action="wave"),
            ReplyChunk(expression="happy"),
            ReplyChunk(text="Hel"),
            ReplyChunk(text="lo!"),
        ]
    )
    events = list(Conversation(card, backend).respond("hi"))
    assert events[0].action == "wave"
    assert [e.text for e in events if e.text] == ["Hel", "lo!"]
    assert events[-1].directive == Directive(dialogue="Hello!", action="wave", expression="happy")


def test_history_is_bounded_and_starts_with_the_greeting(card) -> None:  # type: ignore[no-untyped-def]
    backend = ScriptedBackend(*[[ReplyChunk(text="x" * 100)] for _ in range(30)])
    conversation = Conversation(card, backend, history_chars=1000)
    assert conversation.history[0].content == conversation.greeting
    for i in range(30):
        list(conversation.respond(f"message {i}"))
    sent = backend.requests[-1].history
    assert sum(len(t.content) for t in sent) <= 1000
    assert sent[-1].content == "x" * 100
    kept = conversation.history  # only what could still be sent is kept
    assert sum(len(t.content) for t in kept) <= 1000 and kept[-1].content == "x" * 100


def test_failing_backend_falls_back_offline_with_a_notice(card) -> None:  # type: ignore[no-untyped-def]
    broken = ScriptedBackend([BackendError("connection refused")])
    conversation = Conversation(card, broken, fallback=make_backend("offline"))
    events = list(conversation.respond("please wave"))
    assert any(e.notice and "connection refused" in e.notice for e in events)
    assert events[-1].directive.action == "wave"
    assert len(conversation.history) == 3


def test_failure_mid_stream_keeps_what_arrived(card) -> None:  # type: ignore[no-untyped-def]
    broken = ScriptedBackend(
        [ReplyChunk(action="nod"), ReplyChunk(text="Yes, "), RuntimeError("stream cut")]
    )
    events = list(Conversation(card, broken, fallback=make_backend("offline")).respond("ok?"))
    assert events[-1].directive.action == "nod"
    assert events[-1].directive.dialogue.startswith("Yes,")


@pytest.mark.parametrize("message", ["", "   ", "x" * 2001])
def test_bad_messages_get_a_notice_and_change_nothing(card, message: str) -> None:  # type: ignore[no-untyped-def]
    conversation = Conversation(card, ScriptedBackend())
    events = list(conversation.respond(message))
    assert len(events) == 1 and events[0].notice and events[0].directive is None
    assert len(conversation.history) == 1


def test_expression_persists_across_chit_chat(card) -> None:  # type: ignore[no-untyped-def]
    conversation = Conversation(card, make_backend("offline"))
    list(conversation.respond("look sad"))
    last = list(conversation.respond("what's your name?"))[-1]
    assert (last.directive.action, last.directive.expression) == ("idle", "sad")


def test_character_state_applies_directives_over_time() -> None:
    state = CharacterState(0.0)
    assert state.apply_action("sit_down", 1.0)
    assert not state.apply_action("sit_down", 1.5)  # already sitting: a no-op, not an error
    state.apply_expression("happy", 1.0)
    assert state.current(1.1) == ("sit_down", "happy")
    assert state.conditioning_at(10.0).sitting == pytest.approx(1.0)
    speech = shared_speaker().say("Hello there, how are you?")
    start = state.speech.add(speech, 20.0)
    assert start == 20.0
    during = [state.conditioning_at(20.0 + t / 10) for t in range(int(speech.seconds * 10))]
    assert max(c.mouth_open for c in during) > 0.5
    assert len({c.mouth_shape for c in during}) >= 3  # the mouth changes shape as it talks
    after = state.conditioning_at(20.0 + speech.seconds + 0.1)
    assert (after.mouth_open, after.mouth_shape) == (0.0, "rest")


def _cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "persona", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_cli_directive_and_batch() -> None:
    single = _cli("directive", "wave and smile")
    assert single.returncode == 0, single.stderr
    assert json.loads(single.stdout) | {"dialogue": ""} == {
        "dialogue": "",
        "action": "wave",
        "expression": "happy",
    }
    batch = _cli("directive", "--batch", stdin="dance\nlook sad\n\nsit down\n")
    lines = [Directive.model_validate_json(line) for line in batch.stdout.splitlines()]
    assert [d.action for d in lines] == ["dance", "idle", "sit_down"]
    assert lines[1].expression == "sad"


@pytest.mark.parametrize(
    "args",
    [("directive", ""), ("directive", "hi", "--backend", "nope"), ("directive",), ("frobnicate",)],
)
def test_cli_bad_input(args: tuple[str, ...]) -> None:
    result = _cli(*args)
    assert result.returncode != 0 and result.stdout == "" and result.stderr
