"""Checkpoint layouts of the published streaming Wan models, mapped to diffusers' names.

Self-Forcing and LongLive ship the original Wan2.1 layout (`blocks.0.self_attn.q.weight`,
`head.head`, `modulation`, ...) wrapped in a training checkpoint (`{"generator": ...,
"generator_ema": ...}`, keys prefixed `model.` by their `WanDiffusionWrapper`); LongLive adds a
PEFT LoRA on every linear layer of every block (`base_model.model.blocks.0.self_attn.q.lora_A
.weight`, stored under `generator_lora`). This module maps those keys with explicit tables
(an unknown key is an error, never silently dropped) onto `CausalWanTransformer`'s
diffusers-named parameters, and merges a LoRA into the dense weights (W + alpha/r * B @ A).

Sources of the original names (read, not copied):
- Wan / Self-Forcing `wan/modules/model.py` (guandeh17/Self-Forcing): `WanModel`
  (patch_embedding, text_embedding = Sequential(Linear, GELU, Linear), time_embedding =
  Sequential(Linear, SiLU, Linear), time_projection = Sequential(SiLU, Linear), head.head,
  head.modulation) and `WanAttentionBlock` (self_attn/cross_attn .q .k .v .o .norm_q .norm_k;
  norm3 = the affine cross-attention norm; ffn = Sequential(Linear, GELU, Linear); modulation).
- Self-Forcing `inference.py`: `state_dict['generator' if not use_ema else 'generator_ema']`
  loaded into `WanDiffusionWrapper`, whose transformer attribute is `model`.
- LongLive `utils/lora_utils.py` (NVlabs/LongLive): `peft.LoraConfig(r=rank, lora_alpha=alpha or
  rank, target_modules=<every nn.Linear inside CausalWanAttentionBlock>)`, applied with
  `peft.get_peft_model` to the `CausalWanModel`; `single_prompt_inference.py` reads
  `checkpoint["generator_lora"]`; `configs/longlive_inference.yaml`: `adapter: {rank: 256,
  alpha: 256}` (scale 1, this module's default), `use_ema: false`, `local_attn_size: 12`,
  `sink_size: 3` (= `sink_frames=3, window_frames=9` in `cache.py`).
- diffusers `loaders/single_file_utils.py` `convert_wan_transformer_to_diffusers` agrees
  (including the norm2/norm3 swap).

Torch is imported lazily: the tables are plain data.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from pipelines.wan.transformer import CausalWanTransformer

GENERATOR_KEYS: tuple[str, str] = ("generator", "generator_ema")
"""Training checkpoints (Self-Forcing, LongLive) hold the raw and the EMA generator side by side."""
OTHER_WRAPPERS: tuple[str, ...] = ("model", "state_dict", "generator_lora")
"""Other nestings: LongLive's `model` fallback, plain `state_dict`, and its LoRA checkpoint."""
KEY_PREFIXES: tuple[str, ...] = ("base_model.model.", "model.diffusion_model.", "model.")
"""Prefixes added by PEFT, ComfyUI-style exports and Self-Forcing's `WanDiffusionWrapper.model`."""
FSDP_MARKER = "_fsdp_wrapped_module."
"""Removed anywhere in a key, as LongLive's inference scripts do for EMA weights."""

TOP_LEVEL_MODULES: dict[str, str] = {
    "patch_embedding": "patch_embedding",
    "text_embedding.0": "condition_embedder.text_embedder.linear_1",
    "text_embedding.2": "condition_embedder.text_embedder.linear_2",
    "time_embedding.0": "condition_embedder.time_embedder.linear_1",
    "time_embedding.2": "condition_embedder.time_embedder.linear_2",
    "time_projection.1": "condition_embedder.time_proj",
    "head.head": "proj_out",
}
TOP_LEVEL_PARAMETERS: dict[str, str] = {"head.modulation": "scale_shift_table"}

BLOCK_MODULES: dict[str, str] = {
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
    "norm3": "norm2",  # the original's affine cross-attention norm is diffusers' norm2
    "ffn.0": "ffn.net.0.proj",
    "ffn.2": "ffn.net.2",
}
BLOCK_PARAMETERS: dict[str, str] = {"modulation": "scale_shift_table"}

_BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.(.+)$")
_LORA_KEY = re.compile(r"^(.+)\.(lora_A|lora_B)(?:\.[A-Za-z0-9_]+)?\.weight$")
"""`<module>.lora_A.weight`, or with PEFT's adapter name kept: `<module>.lora_A.default.weight`."""


def unwrap_checkpoint(
    checkpoint: Mapping[str, object], *, use_ema: bool = False
) -> dict[str, torch.Tensor]:
    """The flat weights inside a training checkpoint, wrapper prefixes stripped.

    With both generators present, `use_ema` picks `generator_ema` (Self-Forcing's README runs
    with `--use_ema`; LongLive's configs choose with `use_ema`), else `generator`.
    """
    if any(key in checkpoint for key in GENERATOR_KEYS):
        wanted = GENERATOR_KEYS[1] if use_ema else GENERATOR_KEYS[0]
        inner = checkpoint.get(wanted)
        if not isinstance(inner, Mapping):
            raise ValueError(f"checkpoint has no {wanted!r} weights (keys: {sorted(checkpoint)})")
        return unwrap_checkpoint(inner)
    for wrapper in OTHER_WRAPPERS:
        inner = checkpoint.get(wrapper)
        if isinstance(inner, Mapping):
            return unwrap_checkpoint(inner)
    return {_strip_prefix(key): value for key, value in checkpoint.items()}  # type: ignore[misc]


def original_to_diffusers_key(key: str) -> str:
    """Map one original-layout key (prefix already stripped) to its diffusers name."""
    block = _BLOCK_KEY.match(key)
    modules, parameters, prefix, rest = TOP_LEVEL_MODULES, TOP_LEVEL_PARAMETERS, "", key
    if block:
        modules, parameters = BLOCK_MODULES, BLOCK_PARAMETERS
        prefix, rest = f"blocks.{block.group(1)}.", block.group(2)
    if rest in parameters:
        return prefix + parameters[rest]
    module, _, leaf = rest.rpartition(".")
    if module in modules and leaf in ("weight", "bias"):
        return f"{prefix}{modules[module]}.{leaf}"
    raise KeyError(f"no diffusers name for original Wan key {key!r}")


def convert_original_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Whole original-layout state dict -> diffusers names; lists every unknown key at once."""
    converted, unknown = {}, []
    for key, value in state_dict.items():
        try:
            converted[original_to_diffusers_key(_strip_prefix(key))] = value
        except KeyError:
            unknown.append(key)
    if unknown:
        raise ValueError(f"unknown keys in original Wan checkpoint: {sorted(unknown)[:20]}")
    return converted


def merge_lora(
    state_dict: Mapping[str, torch.Tensor],
    lora: Mapping[str, torch.Tensor],
    *,
    alpha: float | None = None,
) -> dict[str, torch.Tensor]:
    """Diffusers-named weights with a PEFT LoRA folded in: W + (alpha / r) * B @ A.

    `lora` may use original or diffusers module names. `alpha` is PEFT's `lora_alpha`
    (not stored in the state dict); None means alpha = r, LongLive's setting (scale 1).
    """

    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in unwrap_checkpoint(lora).items():
        match = _LORA_KEY.match(key)
        if not match:
            raise ValueError(f"not a LoRA weight key: {key!r}")
        pairs.setdefault(match.group(1), {})[match.group(2)] = value
    merged = dict(state_dict)
    for module, pair in pairs.items():
        if set(pair) != {"lora_A", "lora_B"}:
            raise ValueError(f"LoRA for {module!r} lacks lora_A or lora_B")
        target = _diffusers_module(module) + ".weight"
        if target not in merged:
            raise ValueError(f"LoRA targets {target!r}, which the model does not have")
        down, up = pair["lora_A"].float(), pair["lora_B"].float()
        scale = (alpha if alpha is not None else down.shape[0]) / down.shape[0]
        weight = merged[target]
        merged[target] = (weight.float() + scale * (up @ down)).to(weight.dtype)
    return merged


def load_wan_weights(
    model: CausalWanTransformer,
    checkpoint: Mapping[str, object],
    *,
    use_ema: bool = False,
    lora: Mapping[str, object] | None = None,
    lora_alpha: float | None = None,
) -> None:
    """Load a diffusers- or original-layout checkpoint (and optional LoRA) with strict=True."""
    weights = unwrap_checkpoint(checkpoint, use_ema=use_ema)
    if not any(key.startswith("condition_embedder.") for key in weights):
        weights = convert_original_state_dict(weights)
    if lora is not None:
        weights = merge_lora(weights, lora, alpha=lora_alpha)  # type: ignore[arg-type]
    model.load_state_dict(weights, strict=True)


def _strip_prefix(key: str) -> str:
    key = key.replace(FSDP_MARKER, "")
    stripped = True
    while stripped:
        stripped = False
        for prefix in KEY_PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix) :], True
    return key


def _diffusers_module(module: str) -> str:
    """An original or diffusers module path -> its diffusers module path."""
    try:
        return original_to_diffusers_key(module + ".weight").removesuffix(".weight")
    except KeyError:
        return module
