"""The Directive: what the persona decides to say and do for one reply (DESIGN.md section 2).

Everything a backend produces, an LLM's JSON included, is validated into this model, so an
unknown action or expression never reaches a pipeline.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

from pipelines.conditioning import ACTIONS, EXPRESSIONS, Action, Expression

__all__ = ["ACTIONS", "EXPRESSIONS", "Action", "Directive", "Expression", "spoken"]

STAGE_DIRECTION = re.compile(r"\*[^*]*\*")
"""`*waves*`: what the character does, written into its dialogue; shown, never said."""


class Directive(BaseModel):
    """One reply: the words, the body's action and the face's expression."""

    model_config = ConfigDict(extra="forbid")

    dialogue: str = Field(default="", max_length=4000)
    action: Action = "idle"
    expression: Expression = "neutral"


def spoken(text: str) -> str:
    """The words of a reply without its stage directions."""
    return " ".join(STAGE_DIRECTION.sub(" ", text).split())
