"""The offline interpreter on the labelled set, and the offline backend's dialogue."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from persona.backends.base import ReplyRequest
from persona.backends.offline import OfflineBackend
from persona.evaluation import evaluate, load_cases
from persona.interpreter import OfflineInterpreter, shared_interpreter


@pytest.fixture(scope="module")
def interpreter() -> OfflineInterpreter:
    return shared_interpreter()


def test_accuracy_targets_on_the_labelled_set(interpreter: OfflineInterpreter) -> None:
    cases = load_cases()
    assert len(cases) >= 150
    result = evaluate(interpreter, cases)
    assert result["action_accuracy"] >= 0.95, result["mistakes"]
    assert result["expression_accuracy"] >= 0.90, result["mistakes"]
    assert result["false_action_rate"] <= 0.05, result["mistakes"]


@pytest.mark.parametrize(
    ("text", "action", "expression"),
    [
        ("wave and smile", "wave", "happy"),
        ("dance happily", "dance", "happy"),
        ("wvae at me", "wave", None),
        ("stop dancing", "idle", None),
        ("what's your favourite colour?", None, None),
        ("look left", "look_left", None),
        ("look surprised", None, "surprised"),
    ],
)
def test_readings(
    interpreter: OfflineInterpreter, text: str, action: str | None, expression: str | None
) -> None:
    reading = interpreter.read(text)
    assert (reading.action, reading.expression) == (action, expression)


def _reply(text: str) -> list:
    backend = OfflineBackend()
    return list(
        backend.stream_reply(
            ReplyRequest(system_prompt="", message=text, char_name="Mira", user_name="Sam")
        )
    )


def test_offline_reply_acknowledges_commands_first_with_the_action() -> None:
    chunks = _reply("please wave")
    assert chunks[0].action == "wave" and chunks[0].text == ""
    assert "wave" in "".join(c.text for c in chunks).lower()


def test_offline_reply_is_honest_about_open_questions() -> None:
    text = "".join(c.text for c in _reply("what is the meaning of life?"))
    assert "no language model is connected" in text
    assert "PERSONA_BACKEND=openai" in text and "Sam" in text


def test_shared_interpreter_loads_once_when_threads_ask_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import persona.interpreter

    monkeypatch.setattr(persona.interpreter, "_shared", None)
    with ThreadPoolExecutor(4) as pool:
        interpreters = list(pool.map(lambda _: shared_interpreter(), range(4)))
    assert all(i is interpreters[0] for i in interpreters)
