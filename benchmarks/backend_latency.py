"""Request -> action, -> first dialogue text, -> done (ms medians) for the HTTP LLM backends.

Runs the `openai` and `hf` backends against the local OpenAI-compatible test server on
127.0.0.1 (a scripted reply streamed in small pieces), so the figures are this project's own
overhead: client, SSE, incremental parsing. Prints one JSON object. Model time is not included.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from persona.backends import make_backend
from persona.backends.base import ReplyRequest
from tests.servers.openai_compatible import OpenAICompatibleServer

REQUEST = ReplyRequest(system_prompt="You are Mira.", message="please wave", char_name="Mira")


def _measure(backend, runs: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    action_ms, text_ms, done_ms = [], [], []
    for _ in range(runs):
        start = time.perf_counter()
        first_text = action_at = None
        for chunk in backend.stream_reply(REQUEST):
            now = (time.perf_counter() - start) * 1000
            if chunk.action and action_at is None:
                action_at = now
            if chunk.text and first_text is None:
                first_text = now
        done_ms.append((time.perf_counter() - start) * 1000)
        action_ms.append(action_at or float("nan"))
        text_ms.append(first_text or float("nan"))
    return {
        "action_ms_p50": round(statistics.median(action_ms), 2),
        "first_text_ms_p50": round(statistics.median(text_ms), 2),
        "done_ms_p50": round(statistics.median(done_ms), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    from huggingface_hub import constants

    constants.HF_HUB_OFFLINE = False  # the only server reached is on 127.0.0.1
    results: dict[str, object] = {"runs": args.runs}
    with OpenAICompatibleServer() as server:
        results["openai"] = _measure(
            make_backend("openai", base_url=server.base_url, model="tiny-test-model"), args.runs
        )
        results["hf"] = _measure(
            make_backend("hf", base_url=server.base_url, model="tiny-test-model"), args.runs
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
