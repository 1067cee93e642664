"""The conversation: one place that turns a user message into a streamed reply plus a Directive.

Holds the card, the bounded history (greeting first) and the system prompt built from the card
and the vocabulary. `respond` streams `ReplyEvent`s: the action and expression as soon as the
backend knows them (the video reacts before the words finish), then dialogue deltas, then the
validated final `Directive`. When a backend fails, before or mid-stream, the offline backend
answers instead with a visible notice; the history only changes once a reply is complete.
Knows nothing about the UI or the video.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass

from persona.backends.base import Backend, BackendError, ChatTurn, ReplyRequest
from persona.cards import Card
from persona.directive import Directive

log = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 2000
DEFAULT_HISTORY_CHARS = 6000
"""About 1500 tokens of history; LLM backends may pass their own budget."""

ACTION_MEANINGS: dict[str, str] = {
    "idle": "stand naturally (also: stop what you were doing)",
    "wave": "wave a hand (greeting or goodbye)",
    "nod": "nod yes",
    "shake_head": "shake head no",
    "bow": "take a bow",
    "point": "point at something",
    "thumbs_up": "give a thumbs up",
    "clap": "clap hands",
    "shrug": "shrug (don't know, whatever)",
    "jump": "jump up",
    "dance": "dance until told otherwise",
    "sit_down": "sit down (stays seated)",
    "stand_up": "stand up from sitting",
    "turn_around": "turn around (toggles facing away)",
    "look_left": "look to the left",
    "look_right": "look to the right",
    "think": "strike a thinking pose, hand on chin",
    "cross_arms": "cross arms",
}
EXPRESSION_MEANINGS: dict[str, str] = {
    "neutral": "calm, relaxed face",
    "happy": "smiling",
    "laughing": "laughing out loud",
    "sad": "sad, sympathetic",
    "angry": "angry or annoyed",
    "surprised": "surprised, amazed",
    "confused": "puzzled",
    "thinking": "thoughtful",
    "shy": "shy, blushing",
    "wink": "winking",
    "scared": "scared, nervous",
    "sleepy": "sleepy, tired",
}


@dataclass(frozen=True)
class ReplyEvent:
    """One step of a streamed reply. Only the last event carries `directive`."""

    action: str | None = None
    expression: str | None = None
    text: str = ""
    notice: str | None = None
    directive: Directive | None = None


def build_system_prompt(card: Card, user_name: str = "User") -> str:
    """The LLM system prompt: the card's own prompt and persona, then the acting rules."""
    d = card.data
    parts = [
        card.fill(d.system_prompt, user_name)
        or f"You are {card.name}, a character in a live video chat with {user_name}. "
        f"Stay in character; reply in one to three short spoken sentences.",
        f"Character: {card.fill(d.description, user_name)}" if d.description else "",
        f"Personality: {card.fill(d.personality, user_name)}" if d.personality else "",
        f"Scenario: {card.fill(d.scenario, user_name)}" if d.scenario else "",
        f"Example dialogue:\n{card.fill(d.mes_example, user_name)}" if d.mes_example else "",
        "You are shown on video. With every reply choose one body action and one facial "
        "expression that fit it; do what the user asks your body to do.",
        "Actions:\n" + "\n".join(f"- {k}: {v}" for k, v in ACTION_MEANINGS.items()),
        "Expressions:\n" + "\n".join(f"- {k}: {v}" for k, v in EXPRESSION_MEANINGS.items()),
        'Answer with JSON only: {"action": ..., "expression": ..., "dialogue": ...}',
    ]
    return "\n\n".join(p for p in parts if p)


def build_persona_prompt(card: Card, user_name: str = "User") -> str:
    """The character alone, for a small local model: who it is and how it speaks, with no
    acting rules or JSON (a 135M model loses the character under a long prompt)."""
    d = card.data
    parts = [
        card.fill(d.system_prompt, user_name) or f"You are {card.name}.",
        card.fill(d.description, user_name),
        f"Personality: {card.fill(d.personality, user_name)}." if d.personality else "",
        f"Scenario: {card.fill(d.scenario, user_name)}" if d.scenario else "",
        f"Reply as {card.name}, in the first person, to what {user_name} just said, "
        "in one or two short spoken sentences.",
    ]
    return " ".join(p.strip() for p in parts if p.strip())


_EXAMPLE_LINE = re.compile(
    r"^\s*(\{\{\s*(?:user|char)\s*\}\}|<USER>|<BOT>|[^:\n]{1,40})\s*:\s*(.+)$", re.I
)


def example_turns(card: Card, user_name: str = "User") -> tuple[ChatTurn, ...]:
    """The card's `mes_example` as chat turns: lines `{{user}}: ...` and `{{char}}: ...`
    (blocks separated by `<START>`), each line's speaker read before the macros are filled."""
    turns: list[ChatTurn] = []
    for line in card.data.mes_example.splitlines():
        match = _EXAMPLE_LINE.match(line)
        if match is None or line.strip().upper() == "<START>":
            continue
        speaker = match.group(1).strip().lower().replace(" ", "")
        if speaker in ("{{user}}", "<user>", user_name.lower()):
            role = "user"
        elif speaker in ("{{char}}", "<bot>", card.name.lower().replace(" ", "")):
            role = "assistant"
        else:
            continue
        turns.append(ChatTurn(role=role, content=card.fill(match.group(2).strip(), user_name)))
    return tuple(turns)


class Conversation:
    def __init__(
        self,
        card: Card,
        backend: Backend,
        *,
        user_name: str = "User",
        fallback: Backend | None = None,
        history_chars: int = DEFAULT_HISTORY_CHARS,
    ) -> None:
        self.card = card
        self.backend = backend
        self.user_name = user_name
        self.fallback = fallback
        self.history_chars = history_chars
        self.greeting = card.greeting(user_name)
        self.system_prompt = build_system_prompt(card, user_name)
        self.persona_prompt = build_persona_prompt(card, user_name)
        self.examples = example_turns(card, user_name)
        self.history: list[ChatTurn] = [ChatTurn(role="assistant", content=self.greeting)]
        self.expression = "neutral"

    def _bounded_history(self) -> tuple[ChatTurn, ...]:
        """The most recent turns that fit the character budget, oldest first."""
        kept: list[ChatTurn] = []
        used = 0
        for turn in reversed(self.history):
            used += len(turn.content)
            if used > self.history_chars:
                break
            kept.append(turn)
        return tuple(reversed(kept))

    @staticmethod
    def clean(message: str) -> str:
        """The message as read and shown: NFKC-normalised (full-width "ｗａｖｅ" is "wave"),
        without invisible format and control characters (zero-width spaces, direction
        overrides) or lone surrogates (which JSON can carry but no text encoding can: the
        tokenizer and speech failed on them), stripped. Line breaks and tabs stay."""
        text = unicodedata.normalize("NFKC", message)
        return "".join(
            c for c in text if c in "\n\t" or unicodedata.category(c) not in ("Cc", "Cf", "Cs")
        ).strip()

    @staticmethod
    def problem(message: str) -> str | None:
        """Why `message` cannot be sent (shown to the user), or None when it can."""
        message = Conversation.clean(message)
        if not message:
            return "Type a message first."
        if len(message) > MAX_MESSAGE_CHARS:
            return (
                f"That message is {len(message)} characters long; the "
                f"limit is {MAX_MESSAGE_CHARS}. Nothing was sent."
            )
        return None

    def _request(self, message: str) -> ReplyRequest:
        return ReplyRequest(
            system_prompt=self.system_prompt,
            persona_prompt=self.persona_prompt,
            examples=self.examples,
            history=self._bounded_history(),
            message=message,
            char_name=self.card.name,
            user_name=self.user_name,
        )

    def prepare(self, guess: str = "") -> None:
        """Let the backend get ready for the next message (off the reply path), `guess` when
        it is likely known; a backend that cannot is left to answer (or fail over) when the
        message comes."""
        try:
            self.backend.prepare(self._request(self.clean(guess) if guess else ""))
        except Exception as error:
            log.info("backend %s could not prepare: %s", self.backend.name, error)

    def respond(self, message: str, *, using: Backend | None = None) -> Iterator[ReplyEvent]:
        """The reply to `message` as events, from `using` alone when given, else from this
        conversation's backend with its fallback."""
        if (problem := self.problem(message)) is not None:
            yield ReplyEvent(notice=problem)
            return
        message = self.clean(message)
        request = self._request(message)
        action = expression = None
        text = ""
        backends = [using] if using else [self.backend] + ([self.fallback] if self.fallback else [])
        for index, backend in enumerate(backends):
            try:
                for chunk in backend.stream_reply(request):
                    event = ReplyEvent(
                        action=chunk.action if action is None else None,
                        expression=chunk.expression if expression is None else None,
                        text=chunk.text,
                        notice=chunk.notice,
                    )
                    action = action or chunk.action
                    expression = expression or chunk.expression
                    text += chunk.text
                    if event.action or event.expression or event.text or event.notice:
                        yield event
                break
            except Exception as error:  # any failure: answer offline, keep the session
                is_last = index == len(backends) - 1
                log.warning("backend %s failed: %s", backend.name, error)
                reason = str(error) if isinstance(error, BackendError) else type(error).__name__
                if is_last:
                    yield ReplyEvent(notice=f"The {backend.name} backend failed ({reason}).")
                    text = text or "*looks puzzled* Sorry, I lost my train of thought."
                    break
                yield ReplyEvent(
                    notice=f"The {backend.name} backend failed ({reason}); answering offline.",
                    text="" if not text else " ",
                )
                text += " " if text else ""
        if expression is not None:
            self.expression = expression
        directive = Directive(
            dialogue=text.strip(), action=action or "idle", expression=self.expression
        )
        self.history += [
            ChatTurn(role="user", content=message),
            ChatTurn(role="assistant", content=directive.dialogue),
        ]
        self.history = list(self._bounded_history())  # what is never sent is not kept
        yield ReplyEvent(directive=directive)
