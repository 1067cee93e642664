"""The one small interface every interpreter backend implements (offline, openai, hf, transformers).

A backend turns a `ReplyRequest` into a stream of `ReplyChunk`s: the action and expression as
soon as it knows them (so the video reacts before the words finish), then dialogue deltas.
It knows nothing about the UI, the character state or pipelines; the conversation manager
assembles the final `Directive` and falls back to the offline backend when one fails.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pipelines.conditioning import Action, Expression


class ChatTurn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["user", "assistant"]
    content: str


class ReplyRequest(BaseModel):
    """Everything a backend may use to answer one user message."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    system_prompt: str
    persona_prompt: str = Field(
        default="",
        description="The character alone, no acting rules or JSON: for models too small for more.",
    )
    examples: tuple[ChatTurn, ...] = Field(
        default=(), description="The card's example dialogue as turns (few-shot)."
    )
    history: tuple[ChatTurn, ...] = Field(default=(), description="Oldest first, bounded.")
    message: str
    char_name: str
    user_name: str = "User"

    def chat_messages(self) -> list[dict[str, str]]:
        """The request as OpenAI-style chat messages: system, history, then the new message."""
        messages = [{"role": "system", "content": self.system_prompt}]
        messages += [{"role": t.role, "content": t.content} for t in self.history]
        messages.append({"role": "user", "content": self.message})
        return messages


class ReplyChunk(BaseModel):
    """A piece of a streamed reply. Fields left None/empty carry nothing new."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Action | None = None
    expression: Expression | None = None
    text: str = ""
    notice: str | None = Field(default=None, description="Shown to the user, e.g. a fallback.")


class BackendError(RuntimeError):
    """A backend could not produce a reply; the message is safe to show (no keys)."""


class Backend(ABC):
    name: str

    def check(self) -> None:
        """Raise BackendError saying why this backend cannot answer here, found quickly and
        before any conversation, so the page can say so when it is picked. Default: it can."""

    def preload(self) -> None:
        """Load what the first reply would otherwise wait for (a model). Default: nothing."""

    def prepare(self, request: ReplyRequest) -> None:
        """Get ready for the next message of the conversation `request` describes, off the
        reply path: e.g. run the prompt through a local model once so the reply only runs the
        message. `message` is "" when it is not known yet, or a guess (what a visitor has said
        so far, before their turn is surely over) that the real message may not match.
        Default: nothing."""

    def close(self) -> None:
        """The conversation is over: free what is kept for it (a KV cache in a model
        process). Default: nothing."""

    @abstractmethod
    def stream_reply(self, request: ReplyRequest) -> Iterator[ReplyChunk]:
        """Yield the reply. Raise BackendError (before or mid-stream) when it cannot go on."""
