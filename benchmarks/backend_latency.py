"""Request -> action, -> first dialogue text, -> done (ms medians) for the LLM backends.

Runs the `openai` and `hf` backends against the local OpenAI-compatible test server on
127.0.0.1 (a scripted reply streamed in small pieces), so their figures are this project's own
overhead: client, SSE, incremental parsing, no model time. Runs the `transformers` backend on a
local model: by default a tiny random Llama built here (so the figure is the constrained
decoding's own cost), or `--transformers-model PATH_OR_ID` for a real one. Every request carries
the default character's full system prompt. Prints one JSON object.

    python benchmarks/backend_latency.py [--runs 20] [--transformers-model PATH_OR_ID]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from persona.backends import make_backend
from persona.backends.base import ReplyRequest
from persona.cards import default_cards
from persona.conversation import build_system_prompt
from tests.servers.openai_compatible import SCRIPTED_MODEL, OpenAICompatibleServer
from tests.tiny_chat_model import save_tiny_chat_model

CARD = default_cards()[0]
REQUEST = ReplyRequest(
    system_prompt=build_system_prompt(CARD), message="please wave", char_name=CARD.name
)


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


def _transformers(model: str | None, runs: int) -> dict[str, object]:
    """The transformers backend on `model`, or on a tiny random model saved to a temp folder."""
    with tempfile.TemporaryDirectory(prefix="tiny-chat-") as folder:
        path = model or str(save_tiny_chat_model(Path(folder)))
        backend = make_backend("transformers", model=path)
        cold = _measure(backend, 1)  # the first reply loads the model
        figures = _measure(backend, runs)
    return {
        "model": model or "tiny random Llama",
        "first_reply_done_ms": cold["done_ms_p50"],
        **figures,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--transformers-runs", type=int, default=5)
    parser.add_argument(
        "--transformers-model",
        help="hub id or local path for the transformers backend (default: tiny random Llama)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from huggingface_hub import constants

    constants.HF_HUB_OFFLINE = False  # the only server reached is on 127.0.0.1
    results: dict[str, object] = {"runs": args.runs}
    with OpenAICompatibleServer() as server:
        results["openai"] = _measure(
            make_backend("openai", base_url=server.base_url, model=SCRIPTED_MODEL), args.runs
        )
        results["hf"] = _measure(
            make_backend("hf", base_url=server.base_url, model=SCRIPTED_MODEL), args.runs
        )
    results["transformers"] = {
        "runs": args.transformers_runs,
        **_transformers(args.transformers_model, args.transformers_runs),
    }
    print(json.dumps(results))


if __name__ == "__main__":
    main()
