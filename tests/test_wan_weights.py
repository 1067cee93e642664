"""Original Wan / Self-Forcing / LongLive checkpoints load into the diffusers-named model.

The original-layout state dicts are built here from names written out by hand from the public
sources (Wan's `wan/modules/model.py` as vendored in guandeh17/Self-Forcing; the wrapping from
Self-Forcing's `inference.py` and LongLive's inference scripts; LongLive's LoRA from its
`utils/lora_utils.py`: PEFT `LoraConfig` on every nn.Linear of each attention block), not from
`pipelines.wan.weights`' tables, so a wrong entry there fails here. Loading is strict
(no missing or unexpected keys) and outputs are compared exactly (same numbers, same maths).
"""

from __future__ import annotations

import pytest
import torch

from tests.wan_tiny import latents, text, tiny_model

# Original Wan module path -> diffusers module path, per block (from WanAttentionBlock).
ORIGINAL_BLOCK_NAMES = {
    "self_attn.q": "attn1.to_q",
    "self_attn.k": "attn1.to_k",
    "self_attn.v": "attn1.to_v",
    "self_attn.o": "attn1.to_out.0",
    "self_attn.norm_q": "attn1.norm_q",
    "self_attn.norm_k": "attn1.norm_k",
    "cross_attn.q": "attn2.to_q",
    "cross_attn.k": "attn2.to_k",
    "cross_attn.v": "attn2.to_v",
    "cross_attn.o": "attn2.to_out.0",
    "cross_attn.norm_q": "attn2.norm_q",
    "cross_attn.norm_k": "attn2.norm_k",
    "norm3": "norm2",
    "ffn.0": "ffn.net.0.proj",
    "ffn.2": "ffn.net.2",
}
ORIGINAL_TOP_NAMES = {
    "patch_embedding": "patch_embedding",
    "text_embedding.0": "condition_embedder.text_embedder.linear_1",
    "text_embedding.2": "condition_embedder.text_embedder.linear_2",
    "time_embedding.0": "condition_embedder.time_embedder.linear_1",
    "time_embedding.2": "condition_embedder.time_embedder.linear_2",
    "time_projection.1": "condition_embedder.time_proj",
    "head.head": "proj_out",
}
LORA_TARGETS = [f"{a}.{p}" for a in ("self_attn", "cross_attn") for p in "qkvo"] + [
    "ffn.0",
    "ffn.2",
]
RANK, ALPHA = 4, 8.0


def _original_layout(diffusers_sd: dict[str, torch.Tensor], layers: int) -> dict[str, torch.Tensor]:
    original: dict[str, torch.Tensor] = {"head.modulation": diffusers_sd["scale_shift_table"]}
    for old, new in ORIGINAL_TOP_NAMES.items():
        for leaf in ("weight", "bias"):
            original[f"{old}.{leaf}"] = diffusers_sd[f"{new}.{leaf}"]
    for i in range(layers):
        original[f"blocks.{i}.modulation"] = diffusers_sd[f"blocks.{i}.scale_shift_table"]
        for old, new in ORIGINAL_BLOCK_NAMES.items():
            for leaf in ("weight", "bias"):
                key = f"blocks.{i}.{new}.{leaf}"
                if key in diffusers_sd:  # RMS norms have no bias
                    original[f"blocks.{i}.{old}.{leaf}"] = diffusers_sd[key]
    assert len(original) == len(diffusers_sd)
    return original


def _output(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(latents(3), torch.tensor([600.0]), text())


@pytest.fixture(scope="module")
def source() -> torch.nn.Module:
    return tiny_model(seed=0)


@pytest.mark.parametrize("layout", ["plain", "self_forcing", "self_forcing_ema", "longlive_model"])
def test_original_layouts_load_strictly_and_match(source: torch.nn.Module, layout: str) -> None:
    from pipelines.wan.weights import load_wan_weights

    original = _original_layout(source.state_dict(), len(source.blocks))
    wrapped = {f"model.{k}": v for k, v in original.items()}  # WanDiffusionWrapper.model
    checkpoint, use_ema = {
        "plain": (original, False),
        "self_forcing": ({"generator": wrapped, "generator_ema": {}}, False),
        # LongLive strips FSDP's wrapper name from EMA keys.
        "self_forcing_ema": (
            {
                "generator": {},
                "generator_ema": {
                    k.replace("blocks.", "_fsdp_wrapped_module.blocks."): v
                    for k, v in wrapped.items()
                },
            },
            True,
        ),
        "longlive_model": ({"model": wrapped}, False),
    }[layout]
    model = tiny_model(seed=7)  # different weights until loaded
    load_wan_weights(model, checkpoint, use_ema=use_ema)
    assert torch.equal(_output(model), _output(source))


def test_diffusers_layout_loads_through_the_same_entry_point(source: torch.nn.Module) -> None:
    from pipelines.wan.weights import load_wan_weights

    model = tiny_model(seed=7)
    load_wan_weights(model, source.state_dict())
    assert torch.equal(_output(model), _output(source))


def test_longlive_lora_is_merged_as_w_plus_scaled_b_a(source: torch.nn.Module) -> None:
    from pipelines.wan.weights import load_wan_weights

    generator = torch.Generator().manual_seed(11)
    base = source.state_dict()
    lora: dict[str, torch.Tensor] = {}
    expected = dict(base)
    for i in range(len(source.blocks)):
        for target in LORA_TARGETS:
            weight = base[f"blocks.{i}.{ORIGINAL_BLOCK_NAMES[target]}.weight"]
            down = torch.randn(RANK, weight.shape[1], generator=generator) * 0.1
            up = torch.randn(weight.shape[0], RANK, generator=generator) * 0.1
            # peft.get_peft_model_state_dict of a PeftModel wrapping CausalWanModel.
            lora[f"base_model.model.blocks.{i}.{target}.lora_A.weight"] = down
            lora[f"base_model.model.blocks.{i}.{target}.lora_B.weight"] = up
            name = f"blocks.{i}.{ORIGINAL_BLOCK_NAMES[target]}.weight"
            expected[name] = weight + (ALPHA / RANK) * up @ down

    merged_reference = tiny_model(seed=7)
    merged_reference.load_state_dict(expected, strict=True)

    model = tiny_model(seed=7)
    checkpoint = {"generator": {f"model.{k}": v for k, v in _original_layout(base, 2).items()}}
    load_wan_weights(model, checkpoint, lora={"generator_lora": lora}, lora_alpha=ALPHA)
    torch.testing.assert_close(_output(model), _output(merged_reference), atol=1e-6, rtol=1e-6)
    assert not torch.allclose(_output(model), _output(source), atol=1e-3)


def test_unknown_or_incomplete_keys_are_refused(source: torch.nn.Module) -> None:
    from pipelines.wan.weights import convert_original_state_dict, load_wan_weights, merge_lora

    original = _original_layout(source.state_dict(), 2)
    with pytest.raises(ValueError, match="blocks.0.self_attn.qkv.weight"):
        convert_original_state_dict({**original, "blocks.0.self_attn.qkv.weight": torch.zeros(1)})
    missing = dict(original)
    del missing["blocks.1.ffn.2.bias"]
    with pytest.raises(RuntimeError, match="Missing key"):
        load_wan_weights(tiny_model(), missing)
    with pytest.raises(ValueError, match="no 'generator_ema'"):
        load_wan_weights(tiny_model(), {"generator": original}, use_ema=True)
    with pytest.raises(ValueError, match="lacks lora_A or lora_B"):
        merge_lora(
            source.state_dict(), {"blocks.0.self_attn.q.lora_A.weight": torch.zeros(RANK, 32)}
        )
