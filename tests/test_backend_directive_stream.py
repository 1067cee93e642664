"""Incremental Directive parsing from a streamed LLM reply, at every possible split."""

from __future__ import annotations

import json

import pytest

from persona.backends.directive_stream import DIRECTIVE_SCHEMA, DirectiveStream, nearest_label
from persona.directive import ACTIONS, EXPRESSIONS

REPLY = json.dumps(
    {"action": "wave", "expression": "happy", "dialogue": 'Hi "friend"!\nCaf\u00e9 \u2603 \\o/'}
)


def _collect(deltas: list[str]) -> tuple[list, DirectiveStream]:
    stream = DirectiveStream()
    chunks = [c for d in deltas for c in stream.feed(d)]
    chunks += stream.finish()
    return chunks, stream


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_any_chunking_gives_the_same_directive(size: int) -> None:
    chunks, stream = _collect([REPLY[i : i + size] for i in range(0, len(REPLY), size)])
    assert (stream.action, stream.expression) == ("wave", "happy")
    assert "".join(c.text for c in chunks) == json.loads(REPLY)["dialogue"]


def test_action_is_emitted_before_the_dialogue_finishes() -> None:
    stream = DirectiveStream()
    first = stream.feed('{"action": "dance", "expression": "laughing", "dialogue": "Here I')
    assert [c.action for c in first if c.action] == ["dance"]
    assert [c.expression for c in first if c.expression] == ["laughing"]
    assert "".join(c.text for c in first) == "Here I"
    assert stream.feed(' go!"}')[0].text == " go!"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("wave", "wave"),
        ("Thumbs Up", "thumbs_up"),
        ("sit-down", "sit_down"),
        ("wavee", "wave"),
        ("rm -rf /", "idle"),
        ("", "idle"),
    ],
)
def test_labels_are_validated(value: str, expected: str) -> None:
    assert nearest_label(value, ACTIONS, "idle") == expected


def test_injected_labels_never_pass_and_cut_streams_get_defaults() -> None:
    chunks, stream = _collect(['{"action": "rm -rf /", "expression": "evil", "dialogue": "ha'])
    assert (stream.action, stream.expression) == ("idle", "neutral")
    assert stream.dialogue == "ha" and stream.found_json
    assert [c.action for c in chunks if c.action] == ["idle"]


def test_plain_text_is_recognised_as_not_json() -> None:
    _, stream = _collect(["Sure! I'd love to wave."])
    assert not stream.found_json and (stream.action, stream.expression) == ("idle", "neutral")


def test_schema_lists_the_vocabulary_with_action_first() -> None:
    properties = DIRECTIVE_SCHEMA["properties"]
    assert list(properties) == ["action", "expression", "dialogue"]  # type: ignore[arg-type]
    assert properties["action"]["enum"] == list(ACTIONS)  # type: ignore[index]
    assert properties["expression"]["enum"] == list(EXPRESSIONS)  # type: ignore[index]
