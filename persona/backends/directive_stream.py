"""Incremental parsing of a streamed Directive JSON object from a language model.

LLM backends ask for `{"action": ..., "expression": ..., "dialogue": ...}` with the action and
expression first, and feed the text deltas here as they arrive. The parser emits the action and
the expression as soon as each string value is complete (so the video reacts before the words
finish) and the dialogue as decoded deltas while it streams. Labels are validated: unknown ones
map to the nearest vocabulary label or to idle/neutral, so a prompt-injected "rm -rf" never
reaches a pipeline. Knows nothing about HTTP or any SDK.
"""

from __future__ import annotations

import difflib
import json
import re

from persona.backends.base import BackendError, ReplyChunk
from persona.directive import ACTIONS, EXPRESSIONS

LABEL_CUTOFF = 0.75
_FIELD = r'"{name}"\s*:\s*"((?:[^"\\]|\\.)*)"'
_ACTION = re.compile(_FIELD.format(name="action"))
_EXPRESSION = re.compile(_FIELD.format(name="expression"))
_DIALOGUE_START = re.compile(r'"dialogue"\s*:\s*"')

DIRECTIVE_SCHEMA: dict[str, object] = {
    "type": "object",
    "properties": {
        "action": {"type": "string", "enum": list(ACTIONS)},
        "expression": {"type": "string", "enum": list(EXPRESSIONS)},
        "dialogue": {"type": "string"},
    },
    "required": ["action", "expression", "dialogue"],
    "additionalProperties": False,
}
"""The JSON schema asked of models, fields in the order they should be generated."""


def nearest_label(value: str, labels: tuple[str, ...], default: str) -> str:
    """`value` as a vocabulary label: exact, normalised, close spelling, else `default`."""
    key = re.sub(r"[\s\-]+", "_", value.strip().lower())
    if key in labels:
        return key
    close = difflib.get_close_matches(key, labels, n=1, cutoff=LABEL_CUTOFF)
    return close[0] if close else default


def _decode(fragment: str) -> str:
    return json.loads(f'"{fragment}"')


class DirectiveStream:
    """Feed text deltas; get ReplyChunks. Call `finish()` once the stream ends."""

    def __init__(self) -> None:
        self.text = ""
        self.action: str | None = None
        self.expression: str | None = None
        self.dialogue = ""
        self._dialogue_start: int | None = None
        self._dialogue_done = False
        self._emitted_to = 0  # index into self.text of dialogue already emitted
        self._saw_field = False

    def feed(self, delta: str) -> list[ReplyChunk]:
        self.text += delta
        chunks: list[ReplyChunk] = []
        if self.action is None and (match := _ACTION.search(self.text)):
            self._saw_field = True
            self.action = nearest_label(_decode(match.group(1)), ACTIONS, "idle")
            chunks.append(ReplyChunk(action=self.action))  # type: ignore[arg-type]
        if self.expression is None and (match := _EXPRESSION.search(self.text)):
            self._saw_field = True
            self.expression = nearest_label(_decode(match.group(1)), EXPRESSIONS, "neutral")
            chunks.append(ReplyChunk(expression=self.expression))  # type: ignore[arg-type]
        if text := self._dialogue_delta():
            chunks.append(ReplyChunk(text=text))
        return chunks

    def _dialogue_delta(self) -> str:
        if self._dialogue_done:
            return ""
        if self._dialogue_start is None:
            match = _DIALOGUE_START.search(self.text)
            if match is None:
                return ""
            self._dialogue_start = self._emitted_to = match.end()
        end, i = self._emitted_to, self._emitted_to
        while i < len(self.text):
            char = self.text[i]
            if char == "\\":
                if i + 1 >= len(self.text):
                    break  # an escape split across deltas: wait for the rest
                if self.text[i + 1] == "u" and i + 6 > len(self.text):
                    break
                i += 6 if self.text[i + 1] == "u" else 2
                end = i
                continue
            if char == '"':
                self._dialogue_done = True
                break
            i += 1
            end = i
        fragment = self.text[self._emitted_to : end]
        self._emitted_to = end
        try:
            text = _decode(fragment)
        except json.JSONDecodeError:
            text = fragment
        self.dialogue += text
        return text

    @property
    def found_json(self) -> bool:
        """Whether the model answered with the Directive object at all."""
        return self._saw_field or self._dialogue_start is not None

    def finish(self) -> list[ReplyChunk]:
        """Defaults for fields the stream never completed (a cut or broken reply)."""
        chunks = []
        if self.action is None:
            self.action = "idle"
            chunks.append(ReplyChunk(action="idle"))
        if self.expression is None:
            self.expression = "neutral"
            chunks.append(ReplyChunk(expression="neutral"))
        return chunks

    def end(self) -> list[ReplyChunk]:
        """`finish()` for a language model's reply: raises BackendError when the model did not
        answer with the Directive JSON or said nothing, so the conversation answers offline."""
        if not self.found_json:
            raise BackendError("the language model did not answer with the Directive JSON")
        chunks = self.finish()
        if not self.dialogue.strip():
            raise BackendError("the language model gave an empty reply")
        return chunks
