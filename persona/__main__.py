"""`python -m persona directive "TEXT" [--backend NAME] [--batch]` (DESIGN.md section 2).

Prints the Directive the persona would act on for a user message, as one JSON object; with
`--batch`, reads one message per line on stdin and prints one Directive per line, loading the
model once. Each message is answered on its own (fresh conversation with the default card).
Bad input exits non-zero with a clear message on stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys

from persona.backends import BACKENDS, default_backend_name, make_backend
from persona.backends.base import Backend, BackendError
from persona.cards import CardError, default_cards, load_card
from persona.conversation import Conversation


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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

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
