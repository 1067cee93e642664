"""The `offline` backend: the default, and the fallback when a language model fails.

Reads the action and expression with the embedding interpreter and answers with short, honest,
in-character lines: acknowledgements of what it was asked to do, sympathy or joy for a story,
and for open questions a plain word that no language model is connected and how to connect one.
It never pretends to understand what it cannot.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

from persona.backends.base import Backend, ReplyChunk, ReplyRequest
from persona.interpreter import OfflineInterpreter, shared_interpreter

ACTION_LINES: dict[str, tuple[str, ...]] = {
    "idle": ("*relaxes* Okay, {user}.", "*settles down* Alright."),
    "wave": ("*waves* Hi, {user}!", "*gives you a big wave*", "*waves back* Hello there!"),
    "nod": ("*nods*", "*nods* Mm-hm.", "*nods along*"),
    "shake_head": ("*shakes head*", "*shakes head* Nope.", "*shakes head slowly*"),
    "bow": ("*takes a bow*", "*bows deeply* Thank you, thank you.", "*bows*"),
    "point": ("*points* Over there!", "*points into the distance*", "*points*"),
    "thumbs_up": ("*gives you a thumbs up*", "*thumbs up* Nice!", "*thumbs up*"),
    "clap": ("*claps*", "*applauds* Bravo!", "*claps enthusiastically*"),
    "shrug": ("*shrugs*", "*shrugs* Who knows?", "*shrugs with a little smile*"),
    "jump": ("*jumps*", "*hops up* Whee!", "*jumps up*"),
    "dance": ("*starts dancing*", "*dances* Like this?", "*busts a move*"),
    "sit_down": ("*sits down*", "*takes a seat*", "*sits* Ah, that's better."),
    "stand_up": ("*stands up*", "*gets up*", "*rises to their feet*"),
    "turn_around": ("*turns around*", "*spins around*", "*turns*"),
    "look_left": ("*looks to the left*", "*glances left*"),
    "look_right": ("*looks to the right*", "*glances right*"),
    "think": ("*thinks it over* Hmm...", "*ponders*", "*strokes chin thoughtfully*"),
    "cross_arms": ("*crosses arms*", "*folds arms*"),
}
EXPRESSION_LINES: dict[str, tuple[str, ...]] = {
    "neutral": ("*puts on a straight face*",),
    "happy": ("*smiles*", "*beams at you*"),
    "laughing": ("*laughs* Ha!", "*bursts out laughing*"),
    "sad": ("*looks sad* I'm sorry, {user}.", "*looks down sadly*"),
    "angry": ("*scowls*", "*looks cross*"),
    "surprised": ("*gasps* Really?", "*looks surprised*"),
    "confused": ("*looks confused* Huh?", "*tilts head, puzzled*"),
    "thinking": ("*looks thoughtful*",),
    "shy": ("*blushes*", "*looks away shyly*"),
    "wink": ("*winks*",),
    "scared": ("*looks scared* Eek!", "*shivers*"),
    "sleepy": ("*yawns*", "*looks sleepy*"),
}
NO_MODEL_LINE = (
    "I'd love to answer that properly, {user}, but no language model is connected, so I can "
    'only act things out. Try "wave", "dance" or "look surprised". To really chat, start the '
    "app with PERSONA_BACKEND=openai and OPENAI_BASE_URL (e.g. a local Ollama), or on a Space "
    "with PERSONA_BACKEND=hf and an HF_TOKEN, or pick a backend in the brain panel."
)


class OfflineBackend(Backend):
    name = "offline"

    def __init__(self, interpreter: OfflineInterpreter | None = None) -> None:
        self._interpreter = interpreter or shared_interpreter()

    def stream_reply(self, request: ReplyRequest) -> Iterator[ReplyChunk]:
        reading = self._interpreter.read(request.message)
        yield ReplyChunk(action=reading.action, expression=reading.expression)  # type: ignore[arg-type]
        yield ReplyChunk(text=self.line(request, reading.action, reading.expression))

    @staticmethod
    def line(request: ReplyRequest, action: str | None, expression: str | None) -> str:
        """An in-character line for what was read: the acknowledgement of an action and/or
        expression, else the plain word that no language model is connected."""
        seed = zlib.crc32(f"{request.message}|{len(request.history)}".encode())

        def pick(options: tuple[str, ...]) -> str:
            return options[seed % len(options)].format(user=request.user_name)

        parts = []
        if action is not None:
            parts.append(pick(ACTION_LINES[action]))
        if expression is not None and (action is None or expression != "thinking"):
            parts.append(pick(EXPRESSION_LINES[expression]))
        return " ".join(parts) or pick((NO_MODEL_LINE,))
