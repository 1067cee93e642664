"""`wan`: streaming autoregressive Wan2.1 video (Self-Forcing / LongLive class), GPU only.

Light on purpose: importing this package loads no torch, so `python -m pipelines list` stays
fast; import the modules you need. `schedule.py` is the few-step sampling schedule;
`transformer.py` the block-causal, KV-cached transformer (`CausalWanTransformer`, diffusers'
parameter names; its layers in `layers.py`); `cache.py` its typed KV cache (`WanKVCache`:
attention sink + rolling window, per-prompt cross-attention K/V); `weights.py` the key tables
that load original Wan / Self-Forcing / LongLive (+LoRA) checkpoints; `text.py` the prompts and
umT5 embeddings; `vae.py` / `tiny_vae.py` the streaming decoders; `loading.py` where weights
come from; `pipeline.py` the streaming `WanPipeline`. This module holds its `WanConfig` and the
registry's cheap weights check.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

LATENT_SCALE = 8
"""Pixels per latent in height and width (Wan VAE)."""
PATCH = 2
"""Latent pixels per transformer token in height and width (Wan2.1's patch size (1, 2, 2))."""
WAN_1_3B: dict[str, object] = {
    "num_attention_heads": 12,
    "attention_head_dim": 128,
    "ffn_dim": 8960,
    "num_layers": 30,
    "text_dim": 4096,
}
"""Wan2.1-T2V-1.3B's transformer config (diffusers' `transformer/config.json`), where it
differs from `CausalWanTransformer`'s defaults (which are the 14B's)."""


class WanConfig(BaseModel):
    """How to build and run the `wan` pipeline. Defaults: LongLive-1.3B at 832x480, 16 fps."""

    model_config = ConfigDict(extra="forbid")

    checkpoint: Literal["longlive", "self_forcing", "diffusers"] = Field(
        default="longlive",
        description="Transformer weights: LongLive-1.3B (+LoRA), Self-Forcing DMD, or a "
        "diffusers-layout Wan transformer folder (`transformer/` under `transformer_source`).",
    )
    base: str | None = Field(
        default=None,
        description="Hub id or local directory of the Wan2.1 diffusers layout for the text "
        "encoder, tokenizer and VAE; None: Wan-AI/Wan2.1-T2V-1.3B-Diffusers.",
    )
    transformer_source: str | None = Field(
        default=None,
        description="Local directory holding the checkpoint files (`hf download --local-dir` "
        "layout); for 'diffusers' a hub id or directory with `transformer/`. None: the hub.",
    )
    tiny_decoder_source: str | None = Field(
        default=None, description="Local directory with taew2_1.safetensors; None: the hub."
    )
    use_tiny_decoder: bool = Field(
        default=False, description="Decode with TAEHV taew2_1 instead of the Wan VAE (faster)."
    )
    block_frames: int = Field(default=3, ge=1, le=8, description="Latent frames per block.")
    sink_frames: int = Field(default=3, ge=0, description="Attention-sink latent frames kept.")
    window_frames: int = Field(
        default=9,
        ge=1,
        description="Rolling window of recent latent frames (counting the block's own); "
        "LongLive's local_attn_size=12 with sink 3 is window 9.",
    )
    denoising_steps: tuple[int, ...] = Field(
        default=(1000, 750, 500, 250), min_length=1, description="Published step list."
    )
    shift: float = Field(default=5.0, gt=0, description="Timestep shift of the schedule.")
    recache: bool = Field(
        default=True,
        description="On a prompt change, re-encode the recent frames with the new prompt "
        "(LongLive's KV re-cache); False only swaps the cross-attention prompt.",
    )
    height: int = Field(default=480, ge=16, le=1280)
    width: int = Field(default=832, ge=16, le=1280)
    fps: float = Field(default=16.0, gt=0, le=60)
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    device: str = Field(default="cuda", description='torch device, e.g. "cuda" or "cuda:1".')
    seed: int = Field(default=0, ge=0)
    compile: bool | None = Field(
        default=None,
        description="torch.compile each transformer block's per-token work (fused norms, "
        "modulation, RoPE) while the pipeline is built; None: on CUDA only. H200, 832x480, "
        "transformer: 329 -> 292 ms a block; the build takes ~17 s longer.",
    )
    attention: Literal["auto", "cudnn", "flash", "efficient"] = Field(
        default="cudnn",
        description="The SDPA kernel attention tries first (falling back to torch's others "
        "where it cannot run); 'auto' is torch's own order, which differs between versions. "
        "H200, a block's 4680 queries on 18720 keys: cuDNN 1.06 ms, flash 1.81 ms.",
    )

    @model_validator(mode="after")
    def _check_sizes(self) -> WanConfig:
        step = LATENT_SCALE * PATCH
        if self.height % step or self.width % step:
            raise ValueError(f"height and width must be multiples of {step}")
        if self.window_frames < self.block_frames:
            raise ValueError("window_frames must hold at least one block (>= block_frames)")
        return self


def weights_missing(config: WanConfig | None = None) -> str | None:
    """With HF_HUB_OFFLINE on, why the weights `config` needs are not in the cache; else None.

    Online, missing weights are downloaded when the pipeline is built, so nothing is missing.
    Cheap (file lookups in the Hugging Face cache), and loads no torch.
    """
    from huggingface_hub import try_to_load_from_cache

    from pipelines.wan import loading

    config = config or WanConfig()
    if not loading.hub_offline():
        return None
    wanted: list[tuple[str, str]] = []
    if config.checkpoint != "diffusers" and config.transformer_source is None:
        files = loading.LONGLIVE if config.checkpoint == "longlive" else loading.SELF_FORCING
        wanted += [(files.repo, name) for name in files.files]
    if config.use_tiny_decoder and config.tiny_decoder_source is None:
        wanted += [(loading.TINY_DECODER.repo, name) for name in loading.TINY_DECODER.files]
    if config.base is None:
        names = ["text_encoder/config.json", "tokenizer/tokenizer_config.json"]
        names += [] if config.use_tiny_decoder else ["vae/config.json"]
        wanted += [(loading.WAN_BASE_REPO, name) for name in names]
    missing = [
        f"{repo}/{name}"
        for repo, name in wanted
        if not isinstance(try_to_load_from_cache(repo, name), str)
    ]
    if missing:
        return (
            "HF_HUB_OFFLINE=1 and its weights are not in the Hugging Face cache "
            f"({', '.join(missing)}); run once online or `hf download` them"
        )
    return None
