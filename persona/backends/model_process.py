"""The local chat model in a process of its own, with every conversation's KV cache.

Measured in issue 17: torch decodes a token op by op, letting go of Python's GIL and taking it
back hundreds of times, and in the app's process the event loop, the video encoder and the
renderer take it in between. Under a live stream a token of SmolLM2-135M took ~200 ms instead
of 30 (alone, a Python thread busy 2 ms in every 3 made decoding 4x slower; another process
busy on the same cores, 1.2x). So the model runs in a child process,
`python -m persona.backends.model_process`, one per model source: the app sends prompt token
ids and sampling settings and reads each sampled token back as it comes, over a local
connection that only the parent can open (multiprocessing.connection with a random key).

A conversation's cache is kept under its key, the least recently used dropped past
MAX_CONTEXTS. Requests are served one at a time, as one model on one core must. Knows nothing
about cards, prompts or backends: token ids in, token ids out.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Client, Connection, Listener
from pathlib import Path
from typing import Any

from persona.backends.local_model import (
    CachedContext,
    banned_token_mask,
    common_length,
    load_chat_model,
)

ROOT = str(Path(__file__).resolve().parents[2])
"""Where the `persona` package is, for the child's `-m` (the app may run from elsewhere)."""
NICENESS = 10
"""The model yields the cores to the stream and the ear. At the app's own priority the page
benchmark's barge-in (server cut) took 570 ms (p50); niced 5 or 10, 240-350 ms, and the answer
came no later (end of speech -> first sound p50 1.6-1.9 s either way; runs vary by ~0.3 s)."""
MAX_CONTEXTS = 8
"""Conversations whose KV caches are kept: SmolLM2-135M's take 46 KB a token, 15-45 MB a
conversation. One pushed out rebuilds its cache at its next reply (~1 s)."""
SPARE_WAIT_S = 1.0
"""How long work that only saves time later (preparing, forgetting) waits for the model."""
START_TIMEOUT_S = 300.0
"""A first start converts a GGUF file (~20 s on 2 cores) and imports torch."""


class ModelProcessError(RuntimeError):
    """The model process failed to start, failed a request, or died."""


@dataclass(frozen=True)
class Sampling:
    """How the next tokens are drawn: temperature and top-p after repetition and n-gram
    penalties (`no_repeat_ngram` 0: none), never a token whose text holds one of
    `banned_pieces` or is one of `banned_words`, never end-of-turn before `min_tokens`."""

    max_new_tokens: int
    temperature: float
    top_p: float
    repetition_penalty: float
    no_repeat_ngram: int
    banned_pieces: tuple[str, ...] = ()
    banned_words: tuple[str, ...] = ()
    min_tokens: int = 0
    seed: int | None = None


class ModelProcess:
    """The parent's handle: start the child, then `prepare` and `generate` against it."""

    def __init__(self, source: str) -> None:
        from transformers import AutoTokenizer

        self.source = source
        key = secrets.token_bytes(32)
        self._process = subprocess.Popen(
            [sys.executable, "-m", __name__, source],
            env={
                **os.environ,
                "PERSONA_MODEL_PROCESS_KEY": key.hex(),
                "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])),
            },
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        announced = self._process.stdout.readline().split()  # "<port>", or nothing if it died
        if not announced:
            raise ModelProcessError(f"the model process for {source} ended while starting")
        self._connection = Client(("127.0.0.1", int(announced[0])), authkey=key)
        self._lock = threading.Lock()
        self._request = 0
        if not self._connection.poll(START_TIMEOUT_S):
            self.close()
            raise ModelProcessError(f"the model process for {source} did not load in time")
        ready = self._receive()
        self.eos_token_id: int | None = ready["eos_token_id"]
        self.tokenizer = AutoTokenizer.from_pretrained(ready["tokenizer"])

    @property
    def alive(self) -> bool:
        return self._process.poll() is None

    def prepare(self, context: str, ids: list[int]) -> bool:
        """Make `context`'s cache hold `ids` (the prompt before the next message). Only when
        the model is free within SPARE_WAIT_S: getting ready never queues behind replies (a
        stream of visitors piled up threads waiting here). False when it did not."""
        return self._spare_request(("prepare", context, ids))

    def forget(self, context: str) -> bool:
        """Drop `context`'s cache (its conversation is over), if the model is free within
        SPARE_WAIT_S; otherwise it ages out (MAX_CONTEXTS)."""
        return self._spare_request(("forget", context))

    def _spare_request(self, message: tuple) -> bool:
        if not self._lock.acquire(timeout=SPARE_WAIT_S):
            return False
        try:
            self._connection.send(message)
            self._receive()
            return True
        finally:
            self._lock.release()

    def cached_ids(self, context: str) -> list[int]:
        """The token ids in `context`'s cache ([] if it has none)."""
        with self._lock:
            self._connection.send(("ids", context))
            return self._receive()

    def generate(
        self, context: str, ids: list[int], said_before: list[int], sampling: Sampling
    ) -> Iterator[int]:
        """Sampled token ids after `ids`, each as soon as it is drawn (the last may be the end
        of turn); `said_before` is penalised like the reply's own tokens. Closing the
        iterator early stops the child within a token."""
        with self._lock:
            self._request += 1
            request = self._request
            self._connection.send(("generate", request, context, ids, said_before, sampling))
            try:
                while (token := self._receive()) is not None:
                    yield token
            except GeneratorExit:  # closed early: stop the child, read what it sent meanwhile
                self._connection.send(("stop", request))
                with contextlib.suppress(ModelProcessError):
                    while self._receive() is not None:
                        pass
                raise

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._connection.close()
        self._process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout=5)

    def _receive(self) -> Any:
        try:
            kind, value = self._connection.recv()
        except (EOFError, OSError):
            raise ModelProcessError(f"the model process for {self.source} ended") from None
        if kind == "error":
            raise ModelProcessError(value)
        return value


_processes: dict[str, ModelProcess] = {}
_processes_lock = threading.Lock()


def shared_model_process(source: str) -> ModelProcess:
    """One process per model source for this app, started on first use and again if it died
    (under a lock: two sessions asking at once must not start two)."""
    with _processes_lock:
        process = _processes.get(source)
        if process is None or not process.alive:
            _processes[source] = process = ModelProcess(source)
        return process


# -- the child ------------------------------------------------------------------------------


class _Server:
    def __init__(self, source: str, connection: Connection) -> None:
        self.connection = connection
        self.chat = load_chat_model(source)
        self.contexts: OrderedDict[str, Any] = OrderedDict()
        self.masks: dict[tuple, Any] = {}

    def context(self, key: str) -> Any:
        if key not in self.contexts:
            self.contexts[key] = CachedContext(self.chat.model)
            while len(self.contexts) > MAX_CONTEXTS:
                self.contexts.popitem(last=False)
        self.contexts.move_to_end(key)
        return self.contexts[key]

    def banned(self, sampling: Sampling) -> Any:
        key = (sampling.banned_pieces, sampling.banned_words)
        if key not in self.masks:

            def banned_piece(piece: str) -> bool:
                return any(p in piece for p in sampling.banned_pieces) or (
                    piece.strip() in sampling.banned_words
                )

            self.masks[key] = banned_token_mask(self.chat.tokenizer, self.chat.model, banned_piece)
        return self.masks[key]

    def serve(self) -> None:
        import torch

        with torch.inference_mode():
            while True:
                try:
                    message = self.connection.recv()
                except (EOFError, OSError):
                    return  # the app has gone
                try:
                    self.handle(message)
                except Exception as error:  # one bad request must not end the process
                    self.connection.send(("error", f"{type(error).__name__}: {error}"))

    def handle(self, message: tuple) -> None:
        kind = message[0]
        if kind == "prepare":
            _, key, ids = message
            context = self.context(key)
            if common_length(context.ids, ids) < len(ids):
                context.extend(ids, keep_at_most=len(ids))
            self.connection.send(("ok", None))
        elif kind == "forget":
            self.contexts.pop(message[1], None)
            self.connection.send(("ok", None))
        elif kind == "ids":
            context = self.contexts.get(message[1])
            self.connection.send(("ok", list(context.ids) if context is not None else []))
        elif kind == "generate":
            self.generate(*message[1:])
        # a "stop" for a generation already over needs no answer

    def generate(
        self, request: int, key: str, ids: list[int], said_before: list[int], sampling: Sampling
    ) -> None:
        import torch
        from transformers import (
            LogitsProcessorList,
            NoRepeatNGramLogitsProcessor,
            RepetitionPenaltyLogitsProcessor,
            TemperatureLogitsWarper,
            TopPLogitsWarper,
        )

        penalties = LogitsProcessorList(
            [RepetitionPenaltyLogitsProcessor(sampling.repetition_penalty)]
        )
        if sampling.no_repeat_ngram:
            penalties.append(NoRepeatNGramLogitsProcessor(sampling.no_repeat_ngram))
        warpers = LogitsProcessorList(
            [TemperatureLogitsWarper(sampling.temperature), TopPLogitsWarper(sampling.top_p)]
        )
        generator = torch.Generator()
        if sampling.seed is None:
            generator.seed()
        else:
            generator.manual_seed(sampling.seed)
        banned, eos = self.banned(sampling), self.chat.tokenizer.eos_token_id
        context = self.context(key)
        logits = context.extend(ids, keep_at_most=len(ids) - 1)[0][-1]
        reply: list[int] = []
        for _ in range(sampling.max_new_tokens):
            scores = logits.masked_fill(banned, float("-inf"))[None]
            if len(reply) < sampling.min_tokens and eos is not None:
                scores[0, eos] = float("-inf")
            scores = penalties(torch.tensor([said_before + reply]), scores)
            scores = warpers(torch.tensor([reply], dtype=torch.long), scores)
            token = int(torch.multinomial(scores.softmax(-1), 1, generator=generator))
            self.connection.send(("token", token))
            if token == eos or self.stop_asked(request):
                break
            reply.append(token)
            ids = [*ids, token]
            logits = context.extend(ids, keep_at_most=len(ids) - 1)[0][-1]
        self.connection.send(("done", None))

    def stop_asked(self, request: int) -> bool:
        while self.connection.poll():
            message = self.connection.recv()
            if message == ("stop", request):
                return True
        return False


def main() -> None:
    """Load the model named on the command line, announce the port, serve the app."""
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    key = bytes.fromhex(os.environ.pop("PERSONA_MODEL_PROCESS_KEY"))
    os.nice(NICENESS)
    announce = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # library prints must not reach the app
    with Listener(("127.0.0.1", 0), authkey=key) as listener:
        print(listener.address[1], file=announce, flush=True)
        announce.close()
        connection = listener.accept()
    try:
        server = _Server(sys.argv[1], connection)
    except Exception as error:
        connection.send(("error", f"cannot load {sys.argv[1]}: {type(error).__name__}: {error}"))
        return
    connection.send(
        (
            "ready",
            {
                "eos_token_id": server.chat.tokenizer.eos_token_id,
                "tokenizer": server.chat.folder,
            },
        )
    )
    server.serve()


if __name__ == "__main__":
    main()
