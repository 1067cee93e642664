"""Tiny random Wan transformers and inputs shared by the tests/test_wan_*.py files (no hub).

Sizes are the smallest that still exercise everything: 2 layers, 2 heads of 16 channels (so
RoPE has 8 temporal, 4 height and 4 width channels), 4 latent channels on a 4x4 latent grid
(2x2 = 4 tokens per frame after patching), a 6-token prompt of 8 channels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from pipelines.wan.transformer import CausalWanTransformer

TINY_CONFIG: dict[str, object] = {
    "patch_size": (1, 2, 2),
    "num_attention_heads": 2,
    "attention_head_dim": 16,
    "in_channels": 4,
    "out_channels": 4,
    "text_dim": 8,
    "freq_dim": 16,
    "ffn_dim": 64,
    "num_layers": 2,
    "cross_attn_norm": True,
    "rope_max_seq_len": 64,
}
LATENT_SIZE = 4
TEXT_TOKENS = 6
WEIGHT_STD = 0.2
"""Every parameter (norm weights and modulation tables included) is redrawn at this scale, so a
swapped or missing weight changes the output."""


def randomize(model: torch.nn.Module, seed: int) -> None:
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * WEIGHT_STD)


def tiny_model(seed: int = 0) -> CausalWanTransformer:
    from pipelines.wan.transformer import CausalWanTransformer

    model = CausalWanTransformer(**TINY_CONFIG).eval()  # type: ignore[arg-type]
    randomize(model, seed)
    return model


def latents(frames: int, seed: int = 1, batch: int = 1) -> torch.Tensor:
    import torch

    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 4, frames, LATENT_SIZE, LATENT_SIZE, generator=generator)


def text(seed: int = 2, batch: int = 1) -> torch.Tensor:
    import torch

    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, TEXT_TOKENS, 8, generator=generator)


def frame_timesteps(frames: int, seed: int = 3, batch: int = 1) -> torch.Tensor:
    import torch

    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, frames, generator=generator) * 1000.0


def block_causal_mask(
    frames: int, block: int, *, sink: int = 0, window: int | None = None
) -> torch.Tensor:
    """Reference mask written from the rule, independently of the cache: frame q (in the
    block ending at e) sees frame k iff k < e and (k >= e - window or k < sink)."""
    import torch

    mask = torch.zeros(frames, frames, dtype=torch.bool)
    for q in range(frames):
        end = (q // block + 1) * block
        for k in range(frames):
            mask[q, k] = k < end and (window is None or k >= end - window or k < sink)
    return mask


def word_tokenizer(words: list[str]):  # type: ignore[no-untyped-def]
    """A tiny T5-style tokenizer (one id per word, </s> appended, <pad> = 0), built offline."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(words)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", 1)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )


def tiny_umt5(*, vocab_size: int, d_model: int, d_ff: int):  # type: ignore[no-untyped-def]
    """A seeded, randomly initialised 2-layer umT5 encoder (Wan's text encoder, tiny)."""
    import torch
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(0)
    config = UMT5Config(
        vocab_size=vocab_size,
        d_model=d_model,
        d_kv=4,
        num_heads=2,
        num_layers=2,
        d_ff=d_ff,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=16,
    )
    return UMT5EncoderModel(config).eval()
