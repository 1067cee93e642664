"""Text conditioning for Wan2.1: what the character is doing, as a prompt, as umT5 embeddings.

Two halves. `prompt_for` and `prompt_mix` are pure text: they compose the character card's
appearance prose with one short phrase per action and per expression of the vocabulary
(pipelines.conditioning), and say how much of the previous and current prompts a frame shows
while a change cross-fades. `WanTextEncoder` turns a prompt into the embeddings the Wan
transformer cross-attends to, exactly as diffusers' WanPipeline does (`_get_t5_prompt_embeds`:
pad to 512 tokens, zero the padding positions), and keeps an LRU cache keyed by prompt text:
the vocabulary gives a small set of prompts per character, so switching back to one costs no
encoder pass. torch and transformers are imported only when an encoder is built, so the prompt
half stays light. This module knows nothing about the transformer, its KV cache or decoding.
"""

from __future__ import annotations

import html
import re
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.conditioning import ACTIONS, EXPRESSIONS, Appearance, Conditioning

if TYPE_CHECKING:
    import torch

MAX_TEXT_TOKENS = 512
"""Wan2.1's text length: prompts are padded (or cut) to this many umT5 tokens."""
DEFAULT_CACHE_PROMPTS = 64
"""Enough for every action x expression of one character to stay encoded, and then some."""

ACTION_PHRASES: dict[str, str] = {
    "idle": "standing at ease, breathing calmly with small natural movements",
    "wave": "waving one hand in a friendly greeting",
    "nod": "nodding their head yes",
    "shake_head": "shaking their head no",
    "bow": "bowing politely from the waist",
    "point": "pointing forward with one outstretched finger",
    "thumbs_up": "giving a thumbs up with one hand",
    "clap": "clapping their hands together",
    "shrug": "shrugging their shoulders with palms up",
    "jump": "jumping up in the air with both feet",
    "dance": "dancing happily to a rhythm",
    "sit_down": "sitting down onto a stool",
    "stand_up": "standing up from a stool",
    "turn_around": "turning around on the spot",
    "look_left": "turning their head to look to the left",
    "look_right": "turning their head to look to the right",
    "think": "thinking with one hand on their chin",
    "cross_arms": "standing with their arms crossed",
}
"""One short phrase per action of the vocabulary (DESIGN.md section 2)."""

EXPRESSION_PHRASES: dict[str, str] = {
    "neutral": "with a calm, neutral face",
    "happy": "smiling happily",
    "laughing": "laughing out loud",
    "sad": "looking sad with downcast eyes",
    "angry": "frowning angrily",
    "surprised": "looking surprised with wide eyes and raised eyebrows",
    "confused": "looking confused with a puzzled frown",
    "thinking": "with a thoughtful, pensive expression",
    "shy": "smiling shyly and glancing down",
    "wink": "winking one eye playfully",
    "scared": "looking scared, eyes wide and shoulders tense",
    "sleepy": "looking sleepy with drooping eyelids",
}
"""One short phrase per expression of the vocabulary."""

SCENE = (
    "A single character, full body in frame, medium shot, static camera, soft even studio "
    "lighting, plain background, smooth natural motion, high quality video."
)
"""The part of every prompt that never changes: framing and style."""


def prompt_for(
    appearance: Appearance,
    action: str,
    expression: str,
    *,
    sitting: bool = False,
    facing_back: bool = False,
) -> str:
    """The prompt for a character showing `action` with `expression`.

    Posture and facing persist across actions (DESIGN.md section 2), so they are stated too:
    an idle character who sat down earlier is still seated.
    """
    if action not in ACTION_PHRASES:
        raise ValueError(f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")
    if expression not in EXPRESSION_PHRASES:
        raise ValueError(
            f"unknown expression {expression!r}; expected one of {', '.join(EXPRESSIONS)}"
        )
    pose = "seated on a stool" if sitting else "standing"
    view = "seen from behind" if facing_back else "facing the camera"
    return (
        f"{appearance.description.strip().rstrip('.')}, {pose}, {view}, "
        f"{ACTION_PHRASES[action]}, {EXPRESSION_PHRASES[expression]}. {SCENE}"
    )


def prompt_mix(appearance: Appearance, conditioning: Conditioning) -> list[tuple[str, float]]:
    """The prompts a frame shows and their weights, summing to 1, current prompt first.

    Action and expression cross-fade independently (`action_blend`, `expression_blend`: weight
    of the current value), so a frame mixes up to four prompts bilinearly; outside a blend this
    is the one current prompt with weight 1. Identical prompts are merged, zero weights dropped.
    """
    c = conditioning
    sitting, facing_back = c.sitting >= 0.5, c.facing_back >= 0.5
    a, e = c.action_blend, c.expression_blend
    terms = [
        (c.action, c.expression, a * e),
        (c.action, c.previous_expression, a * (1.0 - e)),
        (c.previous_action, c.expression, (1.0 - a) * e),
        (c.previous_action, c.previous_expression, (1.0 - a) * (1.0 - e)),
    ]
    mix: dict[str, float] = {}
    for action, expression, weight in terms:
        if weight > 0.0:
            text = prompt_for(
                appearance, action, expression, sitting=sitting, facing_back=facing_back
            )
            mix[text] = mix.get(text, 0.0) + weight
    return list(mix.items())


def clean_prompt(text: str) -> str:
    """WanPipeline's prompt clean-up: unescape HTML twice, collapse whitespace.

    (diffusers also runs ftfy when it is installed; it is not a dependency here.)
    """
    return re.sub(r"\s+", " ", html.unescape(html.unescape(text)).strip()).strip()


class WanTextEncoder:
    """umT5 prompt embeddings for the Wan transformer, cached per prompt.

    `encode(prompt)` returns a (1, max_length, dim) tensor whose rows past the prompt's tokens
    are exactly zero, as WanPipeline makes them. The returned tensors are the cached ones:
    treat them as read-only. Not thread-safe.
    """

    def __init__(
        self,
        text_encoder: Any,
        tokenizer: Any,
        *,
        max_length: int = MAX_TEXT_TOKENS,
        cache_prompts: int = DEFAULT_CACHE_PROMPTS,
    ) -> None:
        if max_length < 1 or cache_prompts < 1:
            raise ValueError("max_length and cache_prompts must be >= 1")
        self.text_encoder = text_encoder.eval()
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.cache_prompts = cache_prompts
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.encoder_calls = 0

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        device: str = "cpu",
        dtype: torch.dtype | None = None,
        **options: Any,
    ) -> WanTextEncoder:
        """Load from a Wan diffusers layout on disk (`text_encoder/` and `tokenizer/` folders).

        Use `pipelines.wan.loading.fetch_wan_base` to get such a folder from the hub.
        """
        import torch
        from transformers import AutoTokenizer, UMT5EncoderModel

        root = Path(path)
        encoder = UMT5EncoderModel.from_pretrained(
            root / "text_encoder", dtype=dtype or torch.float32
        ).to(device)
        tokenizer = AutoTokenizer.from_pretrained(root / "tokenizer")
        return cls(encoder, tokenizer, **options)

    def encode(self, prompt: str) -> torch.Tensor:
        """Embeddings of `prompt`, from the cache when it was encoded recently."""
        key = clean_prompt(prompt)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        embeds = self._encode(key)
        self._cache[key] = embeds
        while len(self._cache) > self.cache_prompts:
            self._cache.popitem(last=False)
        return embeds

    def mix(self, weighted: Sequence[tuple[str, float]]) -> torch.Tensor:
        """The weighted sum of prompts' embeddings (from `prompt_mix`); one prompt costs nothing."""
        if not weighted:
            raise ValueError("mix needs at least one (prompt, weight)")
        if len(weighted) == 1 and weighted[0][1] == 1.0:
            return self.encode(weighted[0][0])
        total = None
        for prompt, weight in weighted:
            term = self.encode(prompt) * weight
            total = term if total is None else total + term
        assert total is not None
        return total

    def clear_cache(self) -> None:
        self._cache.clear()

    def cached_prompts(self) -> list[str]:
        """Cached prompts, least recently used first."""
        return list(self._cache)

    def _encode(self, prompt: str) -> torch.Tensor:
        import torch

        tokens = self.tokenizer(
            [prompt],
            padding="max_length",
            max_length=self.max_length,
            truncation=True,
            add_special_tokens=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        device = next(self.text_encoder.parameters()).device
        ids, mask = tokens.input_ids.to(device), tokens.attention_mask.to(device)
        with torch.no_grad():
            hidden = self.text_encoder(ids, mask).last_hidden_state
        self.encoder_calls += 1
        # Zero every position past the prompt's own tokens, so padding carries no signal.
        keep = torch.arange(hidden.shape[1], device=device) < mask.sum(dim=1, keepdim=True)
        return hidden.masked_fill(~keep.unsqueeze(-1), 0.0)
