"""The chat model: its own process (streaming, stopping early, errors, a death survived) and
its int8 weights."""

from __future__ import annotations

import itertools

import pytest

from persona.backends import make_backend
from persona.backends.embedded import EmbeddedBackend, shipped_model_file
from persona.backends.model_process import (
    ModelProcess,
    ModelProcessError,
    Sampling,
    shared_model_process,
)
from persona.cards import default_cards
from persona.conversation import Conversation
from tests.markers import needs_shipped_model

pytestmark = needs_shipped_model
GREEDY_ENOUGH = Sampling(
    max_new_tokens=12, temperature=0.01, top_p=1.0, repetition_penalty=1.0, no_repeat_ngram=0,
    seed=0,
)  # fmt: skip


def _prompt(model: ModelProcess, text: str) -> list[int]:
    chat = [{"role": "user", "content": text}]
    prompt = model.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    return model.tokenizer(prompt, add_special_tokens=False).input_ids


def test_tokens_stream_and_an_early_stop_leaves_nothing_behind() -> None:
    model = shared_model_process(str(shipped_model_file()))
    ids = _prompt(model, "Name a colour.")
    whole = list(model.generate("test-a", ids, [], GREEDY_ENOUGH))
    assert 1 <= len(whole) <= GREEDY_ENOUGH.max_new_tokens
    first_two = list(itertools.islice(model.generate("test-b", ids, [], GREEDY_ENOUGH), 2))
    assert first_two == whole[:2]
    # the stopped generation's last tokens must not be read as the next request's
    assert list(model.generate("test-a", ids, [], GREEDY_ENOUGH)) == whole
    assert model.cached_ids("test-a")[: len(ids)] == ids
    assert model.cached_ids("never-used") == []


def test_a_missing_model_is_a_clear_error() -> None:
    with pytest.raises(ModelProcessError, match=r"cannot load .*missing"):
        ModelProcess("/nowhere/missing-model")


def test_a_model_process_that_dies_costs_at_most_the_reply_under_way() -> None:
    backend = make_backend("embedded", seed=0)
    assert isinstance(backend, EmbeddedBackend)
    conversation = Conversation(default_cards()[0], backend, fallback=make_backend("offline"))
    model = backend._model_process()
    events = []
    for event in conversation.respond("tell me about yourself"):
        events.append(event)
        if event.text and not model._process.poll():
            model._process.kill()  # dies while the reply is being written
    assert any(e.notice and "embedded backend failed" in e.notice for e in events)
    assert events[-1].directive.dialogue
    events = list(conversation.respond("what do you do all day?"))  # a new process answers
    assert not any(e.notice for e in events) and events[-1].directive.dialogue
    assert backend._model_process() is not model and backend._model_process().alive


def test_int8_weights_multiply_like_the_float_ones() -> None:
    import torch

    from persona.backends.int8_weights import quantize_linear_weights

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 96), torch.nn.ReLU(), torch.nn.Linear(96, 8))
    x = torch.randn(3, 5, 64)
    expected = model(x)
    assert quantize_linear_weights(model) == 2
    assert model[0].weight.dtype == torch.int8
    got = model(x)
    assert got.shape == expected.shape and got.dtype == torch.float32
    assert (got - expected).abs().max() < 0.02 * expected.abs().max()


def test_a_forgotten_conversation_frees_its_cache() -> None:
    model = shared_model_process(str(shipped_model_file()))
    model.prepare("test-forget", _prompt(model, "Hello there."))
    assert model.cached_ids("test-forget")
    model.forget("test-forget")
    assert model.cached_ids("test-forget") == []


def test_getting_ready_never_queues_behind_a_reply() -> None:
    model = shared_model_process(str(shipped_model_file()))
    ids = _prompt(model, "Name a colour.")
    reply = model.generate("test-busy", ids, [], GREEDY_ENOUGH)
    next(reply)  # a reply is being written
    assert model.prepare("test-ready", ids) is False
    assert model.forget("test-busy") is False
    reply.close()
    assert model.prepare("test-ready", ids) is True
    assert model.forget("test-ready") is True
