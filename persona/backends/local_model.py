"""Chat models run with transformers: loading, and a KV cache that grows.

A model source is a GGUF file, a model folder or a hub id. A GGUF file is dequantised by
transformers (with the `gguf` package) on its first load, which takes ~20 s on 2 cores, so the
result is saved once as an ordinary safetensors folder in Persona's cache and later loads take
a fraction of a second. Linear layers run with int8 weights (`int8_weights`: half the time
per token). The embedded backend runs its model in a process of its own (`model_process`).
Knows nothing about cards, prompts or backends.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

LLM_THREADS = int(os.environ.get("PERSONA_LLM_THREADS", "1"))
"""torch threads while a local model runs: on 2 cores, one for the model, one for the stream."""


def cache_dir() -> Path:
    """Where converted models live (`PERSONA_CACHE_DIR`, else the user's cache folder)."""
    base = os.environ.get("PERSONA_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "persona"
    )
    return Path(base) / "models"


@dataclass
class ChatModel:
    """A tokenizer and a causal LM in eval mode, with a lock: one generation at a time."""

    tokenizer: Any
    model: Any
    source: str
    folder: str
    """Where the tokenizer loads from (the converted folder of a GGUF file)."""
    load_s: float


def _converted_folder(gguf_file: Path) -> Path:
    """The cache folder for one GGUF file, keyed by its name, size and modification time."""
    stat = gguf_file.stat()
    key = hashlib.sha256(f"{gguf_file.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return cache_dir() / f"{gguf_file.stem}-{key.hexdigest()[:12]}"


def _convert_gguf(gguf_file: Path) -> Path:
    """Dequantise a GGUF chat model once into a safetensors folder; return the folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = _converted_folder(gguf_file)
    if (target / "config.json").is_file():
        return target
    log.info("converting %s for transformers (once; about 20 s)", gguf_file.name)
    kwargs = {"gguf_file": gguf_file.name}
    tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(gguf_file.parent, **kwargs)
    model.hf_quantizer = None  # dequantised to float32 already: save it as a plain model
    model.config.quantization_config = None
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".converting-"))
    try:
        tokenizer.save_pretrained(staging)
        model.save_pretrained(staging)
        staging.rename(target)  # atomic: a half-written folder is never taken for a model
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (target / "config.json").is_file():  # not just another process winning a race
            raise
    return target


def load_chat_model(source: str) -> ChatModel:
    """Load a chat model from a GGUF file, a folder or a hub id (raises OSError/ValueError)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    path = Path(source)
    folder = _convert_gguf(path) if path.suffix == ".gguf" and path.is_file() else source
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    from persona.backends.int8_weights import quantize_linear_weights

    quantize_linear_weights(model)
    if LLM_THREADS:
        torch.set_num_threads(LLM_THREADS)
    load_s = time.perf_counter() - start
    log.info("chat model %s loaded in %.1f s", source, load_s)
    return ChatModel(
        tokenizer=tokenizer, model=model, source=source, folder=str(folder), load_s=load_s
    )


def banned_token_mask(tokenizer: Any, model: Any, banned_piece: Callable[[str], bool]) -> Any:
    """A bool mask over the model's output: True for tokens a reply may never produce. Always
    special tokens other than end-of-turn and ids past the tokenizer's vocabulary (padding
    rows of the embedding), plus every token whose text `banned_piece` refuses."""
    import torch

    size = model.get_output_embeddings().weight.shape[0]
    banned = torch.zeros(size, dtype=torch.bool)
    specials = set(tokenizer.all_special_ids) - {tokenizer.eos_token_id}
    for token_id in range(min(size, len(tokenizer))):
        banned[token_id] = token_id in specials or banned_piece(tokenizer.decode([token_id]))
    banned[len(tokenizer) :] = True
    return banned


def common_length(a: list[int], b: list[int]) -> int:
    """How many leading token ids `a` and `b` share."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:  # the usual case, compared in C
        return n
    return next(i for i in range(n) if a[i] != b[i])


class CachedContext:
    """The token ids the model has seen and their KV cache, so that each new piece of text
    only runs its own tokens: a label scored, a token decoded, or the next turn of a
    conversation whose earlier turns (system prompt first) are already cached. Appending text
    can re-split the last tokens (BPE merges across the join), so extending first crops the
    cache to the shared prefix."""

    def __init__(self, model: Any) -> None:
        from transformers import DynamicCache

        self.model = model
        self.cache = DynamicCache()
        self.ids: list[int] = []

    def extend(self, ids: list[int], *, keep_at_most: int) -> tuple[Any, int]:
        """Make the cache hold `ids`; return the logits of the positions run and where they
        start (at most `keep_at_most`, so the caller gets the logits it needs)."""
        import torch

        start = min(common_length(self.ids, ids), keep_at_most)
        self.cache.crop(start - len(self.ids))  # transformers 5: minus the tokens to drop
        out = self.model(torch.tensor([ids[start:]]), past_key_values=self.cache, use_cache=True)
        self.ids = list(ids)
        return out.logits[0], start
