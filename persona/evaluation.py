"""Accuracy and latency of the offline interpreter, or of any backend, on a labelled message set.

One function shared by the benchmark command (which prints the figures) and the tests (which
fail when accuracy drops below the targets). A case is {"text", "action", "expression"}; a
null label means "nothing asked for", which the interpreter must also respect.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Protocol

from persona.backends.base import Backend, ReplyRequest
from persona.interpreter import Reading

CASES = Path(__file__).resolve().parents[1] / "tests" / "data" / "interpreter_cases.jsonl"


class Reader(Protocol):
    def read(self, message: str) -> Reading: ...


class BackendReader:
    """A backend's action and expression for a message, read from its first reply chunk:
    what reaches the video. The words that follow are not generated."""

    def __init__(self, backend: Backend, char_name: str = "Bram") -> None:
        self.backend = backend
        self.char_name = char_name

    def read(self, message: str) -> Reading:
        request = ReplyRequest(system_prompt="", message=message, char_name=self.char_name)
        chunks = self.backend.stream_reply(request)
        first = next(iter(chunks))
        chunks.close()  # type: ignore[attr-defined]
        return Reading(first.action, first.expression)


def load_cases(path: Path = CASES) -> list[dict[str, str | None]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def evaluate(interpreter: Reader, cases: list[dict[str, str | None]]) -> dict:
    actions = expressions = false_actions = false_expressions = 0
    n_actions = n_expressions = n_no_action = n_no_expression = 0
    latencies, mistakes = [], []
    for case in cases:
        start = time.perf_counter()
        reading = interpreter.read(str(case["text"]))
        latencies.append((time.perf_counter() - start) * 1000)
        want_a, want_e = case["action"], case["expression"]
        if want_a is None:
            n_no_action += 1
            false_actions += reading.action is not None
        else:
            n_actions += 1
            actions += reading.action == want_a
        if want_e is None:
            n_no_expression += 1
            false_expressions += reading.expression is not None
        else:
            n_expressions += 1
            expressions += reading.expression == want_e
        if (reading.action, reading.expression) != (want_a, want_e):
            mistakes.append(
                {
                    "text": case["text"],
                    "want": [want_a, want_e],
                    "got": [reading.action, reading.expression],
                }
            )
    ordered = sorted(latencies)
    return {
        "cases": len(cases),
        "action_accuracy": round(actions / max(n_actions, 1), 4),
        "expression_accuracy": round(expressions / max(n_expressions, 1), 4),
        "false_action_rate": round(false_actions / max(n_no_action, 1), 4),
        "false_expression_rate": round(false_expressions / max(n_no_expression, 1), 4),
        "latency_ms_p50": round(statistics.median(latencies), 2),
        "latency_ms_p95": round(ordered[int(0.95 * (len(ordered) - 1))], 2),
        "mistakes": mistakes,
    }
