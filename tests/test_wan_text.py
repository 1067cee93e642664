"""Wan text conditioning: prompts cover the vocabulary, blends weigh prompts, umT5 embeds cache.

The encoder test uses a tiny random UMT5EncoderModel and a word-level tokenizer built here
(no hub); only the prompt half runs without torch.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.conditioning import ACTIONS, EXPRESSIONS, Appearance, Conditioning
from pipelines.wan.text import (
    ACTION_PHRASES,
    EXPRESSION_PHRASES,
    clean_prompt,
    prompt_for,
    prompt_mix,
)
from tests.wan_tiny import tiny_umt5, word_tokenizer

ROOT = Path(__file__).resolve().parents[1]
LOOK = Appearance(description="a cheerful robot with a round blue head.")


def test_every_action_and_expression_has_its_own_phrase() -> None:
    assert set(ACTION_PHRASES) == set(ACTIONS)
    assert set(EXPRESSION_PHRASES) == set(EXPRESSIONS)
    assert len(set(ACTION_PHRASES.values())) == len(ACTIONS)
    assert len(set(EXPRESSION_PHRASES.values())) == len(EXPRESSIONS)
    prompts = {prompt_for(LOOK, a, e) for a in ACTIONS for e in EXPRESSIONS}
    assert len(prompts) == len(ACTIONS) * len(EXPRESSIONS)


def test_prompt_puts_appearance_first_then_action_and_expression() -> None:
    prompt = prompt_for(LOOK, "wave", "happy")
    assert prompt.startswith("a cheerful robot with a round blue head, standing, facing")
    assert ACTION_PHRASES["wave"] in prompt and EXPRESSION_PHRASES["happy"] in prompt
    seated = prompt_for(LOOK, "idle", "neutral", sitting=True, facing_back=True)
    assert "seated" in seated and "from behind" in seated


def test_unknown_labels_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown action"):
        prompt_for(LOOK, "moonwalk", "happy")
    with pytest.raises(ValueError, match="unknown expression"):
        prompt_for(LOOK, "wave", "smug")


def test_mix_outside_a_blend_is_the_current_prompt() -> None:
    c = Conditioning(action="nod", previous_action="wave", expression="sad")
    assert prompt_mix(LOOK, c) == [(prompt_for(LOOK, "nod", "sad"), 1.0)]


def test_mix_during_blends_is_bilinear_and_sums_to_one() -> None:
    c = Conditioning(
        action="nod",
        previous_action="wave",
        action_blend=0.25,
        expression="sad",
        previous_expression="happy",
        expression_blend=0.5,
    )
    mix = dict(prompt_mix(LOOK, c))
    assert mix == {
        prompt_for(LOOK, "nod", "sad"): pytest.approx(0.125),
        prompt_for(LOOK, "nod", "happy"): pytest.approx(0.125),
        prompt_for(LOOK, "wave", "sad"): pytest.approx(0.375),
        prompt_for(LOOK, "wave", "happy"): pytest.approx(0.375),
    }
    assert next(iter(mix)) == prompt_for(LOOK, "nod", "sad")  # current first


def test_mix_merges_identical_prompts() -> None:
    c = Conditioning(action="wave", previous_action="wave", action_blend=0.3)
    assert prompt_mix(LOOK, c) == [(prompt_for(LOOK, "wave", "neutral"), pytest.approx(1.0))]


def test_clean_prompt_matches_wan_pipeline_cleanup() -> None:
    assert clean_prompt("  a &amp;amp; b\n\t c  ") == "a & b c"


def test_prompt_half_imports_no_torch() -> None:
    code = "import sys, pipelines.wan.text; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


# --- the encoder --------------------------------------------------------------------------

MAX_TOKENS = 12
WORDS = [
    "a",
    "cheerful",
    "robot",
    "with",
    "round",
    "blue",
    "head",
    "standing",
    "facing",
    "the",
    "camera",
    "waving",
]


def _tokenizer():  # type: ignore[no-untyped-def]
    return word_tokenizer(WORDS)


@pytest.fixture(scope="module")
def parts():  # type: ignore[no-untyped-def]
    pytest.importorskip("torch")
    model = tiny_umt5(vocab_size=len(WORDS) + 3, d_model=16, d_ff=32)
    return model, _tokenizer()


def _encoder(parts, **options):  # type: ignore[no-untyped-def]
    from pipelines.wan.text import WanTextEncoder

    return WanTextEncoder(*parts, max_length=MAX_TOKENS, **options)


def test_embeddings_match_the_model_and_zero_the_padding(parts) -> None:  # type: ignore[no-untyped-def]
    import torch

    model, tokenizer = parts
    embeds = _encoder(parts).encode("a cheerful robot waving")
    assert embeds.shape == (1, MAX_TOKENS, 16)
    tokens = tokenizer(["a cheerful robot waving"], return_tensors="pt")
    n = tokens.input_ids.shape[1]  # 4 words + </s>
    assert n == 5
    padded = tokenizer(
        ["a cheerful robot waving"],
        padding="max_length",
        max_length=MAX_TOKENS,
        return_tensors="pt",
    )
    with torch.no_grad():
        reference = model(padded.input_ids, padded.attention_mask).last_hidden_state
    torch.testing.assert_close(embeds[:, :n], reference[:, :n], atol=1e-6, rtol=0)
    assert torch.count_nonzero(embeds[:, n:]) == 0
    assert torch.all(embeds[:, :n].abs().sum(-1) > 0)


def test_long_prompts_are_cut_to_max_length(parts) -> None:  # type: ignore[no-untyped-def]
    import torch

    embeds = _encoder(parts).encode(" ".join(WORDS * 3))
    assert embeds.shape == (1, MAX_TOKENS, 16)
    assert torch.all(embeds.abs().sum(-1) > 0)


def test_switching_back_to_a_prompt_costs_no_encoder_pass(parts) -> None:  # type: ignore[no-untyped-def]
    encoder = _encoder(parts)
    first = encoder.encode("a robot waving")
    encoder.encode("a robot standing")
    again = encoder.encode("a  robot waving ")  # same after clean-up
    assert encoder.encoder_calls == 2
    assert again is first


def test_cache_evicts_least_recently_used(parts) -> None:  # type: ignore[no-untyped-def]
    encoder = _encoder(parts, cache_prompts=2)
    encoder.encode("a")
    encoder.encode("robot")
    encoder.encode("a")  # touch: "robot" is now the oldest
    encoder.encode("head")
    assert encoder.cached_prompts() == ["a", "head"]
    encoder.encode("robot")
    assert encoder.encoder_calls == 4


def test_mix_is_the_weighted_sum_of_embeddings(parts) -> None:  # type: ignore[no-untyped-def]
    import torch

    encoder = _encoder(parts)
    a, b = encoder.encode("a robot waving"), encoder.encode("a robot standing")
    mixed = encoder.mix([("a robot waving", 0.25), ("a robot standing", 0.75)])
    torch.testing.assert_close(mixed, 0.25 * a + 0.75 * b)
    assert encoder.mix([("a robot waving", 1.0)]) is a
    with pytest.raises(ValueError):
        encoder.mix([])


def test_from_pretrained_reads_the_wan_diffusers_layout(parts, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import torch

    from pipelines.wan.text import WanTextEncoder

    model, tokenizer = parts
    model.save_pretrained(tmp_path / "text_encoder")
    tokenizer.save_pretrained(tmp_path / "tokenizer")
    loaded = WanTextEncoder.from_pretrained(tmp_path, max_length=MAX_TOKENS)
    torch.testing.assert_close(
        loaded.encode("a robot waving"), _encoder(parts).encode("a robot waving")
    )
