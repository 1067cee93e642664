"""A causal language model from a local folder that the test server can answer with.

Streams text as `model.generate` produces it (greedy, so a test sees the same reply every run),
the way llama.cpp or vLLM would behind `/v1/chat/completions`. It ignores `response_format`,
like servers without structured output support do. Knows nothing about HTTP.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

DEFAULT_MAX_TOKENS = 32


class LocalChatModel:
    def __init__(self, path: Path) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.name = Path(path).name
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path).eval()
        self._lock = threading.Lock()  # one generation at a time, like a single-slot server

    def stream(self, messages: list[dict[str, str]], max_tokens: int | None) -> Iterator[str]:
        """Text pieces of the model's reply to the chat `messages`."""
        from transformers import TextIteratorStreamer

        ids = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )["input_ids"]
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        options = {
            "input_ids": ids,
            "attention_mask": ids.new_ones(ids.shape),
            "max_new_tokens": max_tokens or DEFAULT_MAX_TOKENS,
            "do_sample": False,
            "streamer": streamer,
            "pad_token_id": self.tokenizer.eos_token_id,
        }
        with self._lock:
            worker = threading.Thread(target=self.model.generate, kwargs=options, daemon=True)
            worker.start()
            yield from (piece for piece in streamer if piece)
            worker.join()
