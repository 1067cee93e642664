"""Speed of the streaming `wan` pipeline at Wan2.1-T2V-1.3B size with random weights (JSON).

python benchmarks/wan_speed.py [--device cuda] [--blocks 10] [--width 832 --height 480]
    [--block-frames 3] [--sink-frames 3] [--window-frames 9] [--tiny-decoder]
    [--compile auto|on|off] [--attention auto|cudnn|flash|efficient]

Speed does not depend on weight values, so this builds a real `WanPipeline` from randomly
initialised full-size parts (the 1.3B transformer; diffusers' AutoencoderKLWan, or the
TAEHV-size tiny decoder with `--tiny-decoder`) and times exactly what the app runs:
`pipeline.reset(character)`, then one `pipeline.step(conditioning)` per block (few-step
denoising, the t=0 pass into the sink + rolling-window KV cache, the streaming decode, uint8
frames back on the CPU). The conditioning never changes, so no block re-caches. The text
encoder is a 2-layer umT5 stand-in of the transformer's text width: it gives the same 512-token
embeddings to cross-attend to, but the real umT5-XXL, which runs once per new prompt (not per
block), is not timed, not even in the time to first frame.

Prints one JSON line: steady-state fps (video frames per second at the median block after the
first), block ms p50/p95, the time to build the pipeline (on CUDA that includes compiling and
a warm-up stream: `WanPipeline._warm_up`), the time to first frame (`reset` + first `step` of
the first stream after the build), prompt switches (blocks under a new action, each of which
re-encodes the recent frames: LongLive's KV re-cache; their median and its excess over the
median block), peak GPU memory on cuda and the transformer's parameter count. `--tiny` runs
the same code with tiny parts (a CPU check).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKLWan

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.conditioning import Character, Conditioning
from pipelines.wan import WAN_1_3B, WanConfig
from pipelines.wan.pipeline import WanPipeline
from pipelines.wan.text import WanTextEncoder
from pipelines.wan.tiny_vae import StreamingTinyDecoder, TinyWanDecoder
from pipelines.wan.transformer import CausalWanTransformer
from pipelines.wan.vae import StreamingWanDecoder
from tests.wan_tiny import tiny_umt5, word_tokenizer


@dataclass(frozen=True)
class Size:
    """The random parts' configs and the default frame size: all that differs with `--tiny`."""

    transformer: dict[str, object]
    vae: dict[str, object]
    tiny_decoder: dict[str, object]
    width: int
    height: int


SWITCHES = (Conditioning(action="wave"), Conditioning(action="nod"), Conditioning(action="wave"))
"""Prompt switches after the timed blocks: each action differs from the block before it."""
COMPILE = {"auto": None, "on": True, "off": False}
FULL = Size(transformer=WAN_1_3B, vae={}, tiny_decoder={}, width=832, height=480)
"""Wan2.1-T2V-1.3B; AutoencoderKLWan's and TinyWanDecoder's defaults are the published ones."""
TINY = Size(
    transformer=dict(
        num_attention_heads=2, attention_head_dim=16, ffn_dim=64, num_layers=2, text_dim=32
    ),
    vae=dict(base_dim=8, dim_mult=[1, 2, 2, 2], num_res_blocks=1),
    tiny_decoder=dict(widths=(8, 8, 8, 8)),
    width=64,
    height=32,
)
TEXT_FFN_DIM = 16
"""The stand-in umT5's feed-forward width: only its output shape matters here."""
CHARACTER = Character(name="Benchmark")


def build_pipeline(size: Size, config: WanConfig) -> WanPipeline:
    """A WanPipeline of random parts of `size`, on `config`'s device and dtype."""
    device, dtype = torch.device(config.device), getattr(torch, config.dtype)
    torch.manual_seed(config.seed)
    with device:
        transformer = CausalWanTransformer(**size.transformer).to(dtype)
        decoder = (
            StreamingTinyDecoder(TinyWanDecoder(**size.tiny_decoder).to(dtype).eval())
            if config.use_tiny_decoder
            else StreamingWanDecoder(AutoencoderKLWan(**size.vae).to(dtype).eval())
        )
    # No vocabulary (every word is <unk>): the embeddings are padded to 512 tokens regardless.
    umt5 = tiny_umt5(vocab_size=3, d_model=transformer.config.text_dim, d_ff=TEXT_FFN_DIM)
    text_encoder = WanTextEncoder(umt5.to(device, dtype), word_tokenizer([]))
    return WanPipeline(config, transformer=transformer, text_encoder=text_encoder, decoder=decoder)


def run(args: argparse.Namespace) -> dict[str, object]:
    size = TINY if args.tiny else FULL
    device = torch.device(args.device)
    config = WanConfig(
        width=args.width or size.width,
        height=args.height or size.height,
        block_frames=args.block_frames,
        sink_frames=args.sink_frames,
        window_frames=args.window_frames,
        use_tiny_decoder=args.tiny_decoder,
        device=args.device,
        dtype="bfloat16" if device.type == "cuda" else "float32",
        compile=COMPILE[args.compile],
        attention=args.attention,
    )
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    # step returns uint8 frames on the CPU, so each end time is after the GPU finished.
    began = time.perf_counter()
    pipeline = build_pipeline(size, config)
    built = time.perf_counter()
    assert pipeline.transformer is not None
    params = sum(p.numel() for p in pipeline.transformer.parameters())
    frames = pipeline.spec.chunk_frames
    # 1. A stream of idle blocks (one prompt): the first block, then the steady state.
    pipeline.reset(CHARACTER)
    ends = []
    for _ in range(args.blocks):
        pipeline.step([Conditioning()] * frames)
        ends.append(time.perf_counter())
    # 2. Prompt switches: each block re-caches the window under its new prompt.
    switch_ms = []
    for conditioning in SWITCHES:
        recaches, switch_began = pipeline.recaches, time.perf_counter()
        pipeline.step([conditioning] * frames)
        switch_ms.append(1000 * (time.perf_counter() - switch_began))
        if pipeline.recaches != recaches + 1:
            raise RuntimeError("a prompt switch did not re-cache the window")
    block_ms_p50, block_ms_p95 = 1000 * np.percentile(np.diff(ends), [50, 95])
    switch_p50 = float(np.median(switch_ms))
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "params": params,
        "size": f"{config.width}x{config.height}",
        "decoder": "tiny" if config.use_tiny_decoder else "wan_vae",
        "compile": pipeline.compiled,
        "attention": config.attention,
        "blocks": args.blocks,
        "latent_frames_per_block": config.block_frames,
        "video_frames_per_block": frames,
        "steps": len(pipeline.timesteps),
        "sink_frames": config.sink_frames,
        "window_frames": config.window_frames,
        "fps_median": round(1000 * frames / block_ms_p50, 2),
        "block_ms_p50": round(block_ms_p50, 1),
        "block_ms_p95": round(block_ms_p95, 1),
        "build_s": round(built - began, 2),
        "time_to_first_frame_s": round(ends[0] - built, 3),
        "prompt_switch_block_ms": round(switch_p50, 1),
        "prompt_switch_extra_ms": round(switch_p50 - block_ms_p50, 1),
        "peak_memory_gb": round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        if device.type == "cuda"
        else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--blocks", type=int, default=10, help="Steps timed, the first included.")
    parser.add_argument("--width", type=int, help="Default 832 (64 with --tiny).")
    parser.add_argument("--height", type=int, help="Default 480 (32 with --tiny).")
    parser.add_argument("--block-frames", type=int, default=3, help="WanConfig.block_frames")
    parser.add_argument("--sink-frames", type=int, default=3, help="WanConfig.sink_frames")
    parser.add_argument("--window-frames", type=int, default=9, help="WanConfig.window_frames")
    parser.add_argument(
        "--tiny-decoder", action="store_true", help="WanConfig.use_tiny_decoder (TAEHV size)."
    )
    parser.add_argument(
        "--compile", choices=sorted(COMPILE), default="auto", help="WanConfig.compile (auto: CUDA)"
    )
    parser.add_argument(
        "--attention",
        choices=["auto", "cudnn", "flash", "efficient"],
        default=WanConfig.model_fields["attention"].default,
        help="WanConfig.attention",
    )
    parser.add_argument("--tiny", action="store_true", help="Tiny random parts (CPU check).")
    args = parser.parse_args()
    if args.blocks < 2:
        parser.error("--blocks must be >= 2: the first block is start-up, not steady state")
    print(json.dumps(run(args)))


if __name__ == "__main__":
    main()
