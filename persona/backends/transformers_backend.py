"""The `transformers` backend: a local chat model (hub id or path), decoding constrained.

`PERSONA_TRANSFORMERS_MODEL` names the model (default a small instruct model); it is loaded once,
lazily, on the first reply (huggingface_hub shows download progress when online; offline, a clear
`BackendError`). The Directive JSON is never free text: the action and the expression are each
chosen among the vocabulary labels by the model's own likelihood of the label after the JSON
prefix, and the dialogue is decoded greedily with every token that holds a quote, a backslash or
a newline masked out, so the assembled object always parses. One KV cache carries the prompt
through the whole reply: the prompt runs through the model once, each label adds only its own
tokens. Knows nothing about HTTP.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from persona.backends.base import Backend, BackendError, ReplyChunk, ReplyRequest
from persona.backends.local_model import CachedContext, banned_token_mask, common_length
from persona.directive import ACTIONS, EXPRESSIONS

DEFAULT_TRANSFORMERS_MODEL = "HuggingFaceTB/SmolLM2-360M-Instruct"
MAX_DIALOGUE_TOKENS = 80
_FORBIDDEN_IN_DIALOGUE = ('"', "\\", "\n", "\r")


class TransformersBackend(Backend):
    name = "transformers"

    def __init__(self, *, model: str | None = None, max_new_tokens: int = MAX_DIALOGUE_TOKENS):
        self.model_id = (
            model or os.environ.get("PERSONA_TRANSFORMERS_MODEL") or (DEFAULT_TRANSFORMERS_MODEL)
        )
        self.max_new_tokens = max_new_tokens
        self._loaded: tuple[Any, Any, Any] | None = None

    def check(self) -> None:
        """The libraries are installed and the model is a folder, in the hub cache, or can be
        downloaded (hub not offline); loading itself waits for the first reply."""
        import importlib.util

        from huggingface_hub import constants, try_to_load_from_cache

        if not all(importlib.util.find_spec(m) for m in ("torch", "transformers")):
            raise BackendError("torch and transformers are not installed here")
        if Path(self.model_id).is_dir():
            return
        try:
            cached = try_to_load_from_cache(self.model_id, "config.json")
        except ValueError:
            raise BackendError(
                f"{self.model_id!r} is neither a model folder nor a hub model id"
            ) from None
        if not isinstance(cached, str) and constants.HF_HUB_OFFLINE:
            raise BackendError(
                f"the model {self.model_id!r} is not downloaded and HF_HUB_OFFLINE is set; "
                "set PERSONA_TRANSFORMERS_MODEL to a local folder"
            )

    def _load(self) -> tuple[Any, Any, Any]:
        """(tokenizer, model, mask of tokens banned in the dialogue), built once."""
        if self._loaded is None:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            try:
                tokenizer = AutoTokenizer.from_pretrained(self.model_id)
                model = AutoModelForCausalLM.from_pretrained(self.model_id).eval()
            except (OSError, ValueError) as error:
                raise BackendError(
                    f"cannot load the local model {self.model_id!r} ({type(error).__name__}); "
                    "download it once online or give a local path"
                ) from None
            banned = banned_token_mask(
                tokenizer, model, lambda piece: any(c in piece for c in _FORBIDDEN_IN_DIALOGUE)
            )
            self._loaded = (tokenizer, model, banned)
        return self._loaded

    def _encode(self, text: str) -> list[int]:
        tokenizer = self._load()[0]
        return tokenizer(text, add_special_tokens=False).input_ids

    def _likeliest_label(self, context: CachedContext, prefix: str, labels: tuple[str, ...]) -> str:
        """The label whose tokens (closing quote included) the model finds likeliest after
        `prefix`. The prefix runs through the model once; each label only adds its own tokens."""
        import torch

        prefix_ids = self._encode(prefix)
        scores = []
        for label in labels:
            ids = self._encode(prefix + json.dumps(label))
            own = common_length(prefix_ids, ids)  # where this label's tokens start
            logits, ran_from = context.extend(ids, keep_at_most=own - 1)
            predicted = logits[own - ran_from - 1 : -1].log_softmax(-1)
            targets = torch.tensor(ids[own:])[:, None]
            scores.append(predicted.gather(1, targets).mean().item())
        return labels[max(range(len(labels)), key=scores.__getitem__)]

    def stream_reply(self, request: ReplyRequest) -> Iterator[ReplyChunk]:
        import torch

        tokenizer, model, banned = self._load()
        messages = request.chat_messages()
        prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        context = CachedContext(model)
        with torch.no_grad():
            text = prompt + '{"action": '
            action = self._likeliest_label(context, text, ACTIONS)
            yield ReplyChunk(action=action)
            text += json.dumps(action) + ', "expression": '
            expression = self._likeliest_label(context, text, EXPRESSIONS)
            yield ReplyChunk(expression=expression)
            text += json.dumps(expression) + ', "dialogue": "'
            ids = self._encode(text)
            logits = context.extend(ids, keep_at_most=len(ids) - 1)[0][-1]
            dialogue_ids: list[int] = []
            dialogue = ""
            for _ in range(self.max_new_tokens):
                logits = logits.masked_fill(banned, float("-inf"))
                if not dialogue_ids and tokenizer.eos_token_id is not None:
                    logits[tokenizer.eos_token_id] = float("-inf")  # at least one word
                next_id = int(logits.argmax())
                if next_id == tokenizer.eos_token_id:
                    break
                dialogue_ids.append(next_id)
                decoded = tokenizer.decode(dialogue_ids, skip_special_tokens=True)
                if len(decoded) > len(dialogue) and not decoded.endswith("\ufffd"):
                    yield ReplyChunk(text=decoded[len(dialogue) :])
                    dialogue = decoded
                ids = [*ids, next_id]
                logits = context.extend(ids, keep_at_most=len(ids) - 1)[0][-1]
        if not dialogue.strip():
            raise BackendError("the local model gave an empty reply")
