"""The persona's command lines (DESIGN.md section 2); each prints one JSON object.

    python -m persona directive "TEXT" [--backend NAME] [--batch]
    python -m persona say "TEXT" --out FILE.wav [--voice NAME] [--card FILE]
    python -m persona listen FILE.wav

`directive` prints the Directive the persona would act on for a user message; with `--batch`,
reads one message per line on stdin and prints one Directive per line, loading the model once.
Each message is answered on its own (fresh conversation with the default card). `say` writes
the character's speech and prints its length and mouth-shape timeline; `listen` prints what a
recording says. Bad input exits non-zero with a clear message on stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from persona.backends import BACKENDS, default_backend_name, make_backend
from persona.backends.base import Backend, BackendError
from persona.cards import CardError, default_cards, load_card
from persona.conversation import Conversation
from persona.voice.stt import read_audio, shared_transcriber
from persona.voice.tts import VoiceError, shared_speaker


def _directive_json(
    card_path: str | None, backend: Backend, fallback: Backend | None, text: str
) -> str:
    card = load_card(card_path) if card_path else default_cards()[0]
    conversation = Conversation(card, backend, fallback=fallback)
    for event in conversation.respond(text):
        if event.notice:
            print(f"notice: {event.notice}", file=sys.stderr)
        if event.directive:
            return event.directive.model_dump_json()
    raise ValueError("no reply")


def _say(text: str, out: str, voice: str | None, card_path: str | None) -> int:
    if not text.strip():
        print("error: TEXT is empty", file=sys.stderr)
        return 2
    card = load_card(card_path) if card_path else default_cards()[0]
    settings = card.voice.model_copy(update={"voice": voice}) if voice else card.voice
    speech = shared_speaker().say(text, settings)
    try:
        speech.write_wav(out)
    except OSError as error:
        raise VoiceError(f"cannot write {out}: {error.strerror}") from None
    mouth = [[t, shape] for t, shape in speech.mouth.changes()]
    print(json.dumps({"duration_s": round(speech.seconds, 3), "mouth": mouth}))
    return 0


def _listen(path: str) -> int:
    text = shared_transcriber().transcribe(read_audio(path))
    print(json.dumps({"text": text}))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m persona",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    directive = commands.add_parser("directive", help="the Directive for a user message")
    directive.add_argument("text", nargs="?", help="the user message (omit with --batch)")
    directive.add_argument(
        "--backend",
        default=default_backend_name(),
        help=f"one of {', '.join(BACKENDS)} (default: {default_backend_name()}, the app's brain)",
    )
    directive.add_argument("--batch", action="store_true", help="one message per stdin line")
    directive.add_argument("--card", help="a character card file (default: the first shipped)")
    say = commands.add_parser("say", help="speak TEXT into a WAV file")
    say.add_argument("text")
    say.add_argument("--out", required=True, help="the WAV file to write")
    say.add_argument("--voice", help="an installed voice (default: the card's)")
    say.add_argument("--card", help="speak as this card's voice (default: the first shipped)")
    listen = commands.add_parser("listen", help="transcribe an audio file")
    listen.add_argument("file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "say":
            return _say(args.text, args.out, args.voice, args.card)
        if args.command == "listen":
            return _listen(args.file)
    except (VoiceError, CardError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    if args.batch == (args.text is not None):
        print("error: give TEXT, or --batch with messages on stdin (not both)", file=sys.stderr)
        return 2
    if args.text is not None and not args.text.strip():
        print("error: TEXT is empty", file=sys.stderr)
        return 2
    try:
        backend = make_backend(args.backend)
        fallback = make_backend("offline") if args.backend != "offline" else None
        lines = sys.stdin if args.batch else [args.text]
        for line in lines:
            text = line.strip()
            if not text:
                continue
            print(_directive_json(args.card, backend, fallback, text), flush=True)
    except (BackendError, CardError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
