"""Speed of the streaming Wan2.1-T2V-1.3B architecture with random weights (JSON).

python benchmarks/wan_speed.py [--device cuda] [--blocks 10] [--width 832 --height 480]

Speed does not depend on weight values, so this builds the full-size transformer and VAE with
random weights and runs the real streaming loop: per block of 3 latent frames, the 4-step
Self-Forcing schedule (x0 prediction, re-noise), the extra t=0 pass that writes the block into a
LongLive-style KV cache (3-frame sink + rolling window), and the VAE decode of the block.
Prints steady-state fps (video frames), time to first frame and peak GPU memory. `--tiny` runs
a tiny configuration on CPU to check the script itself.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.wan.schedule import NUM_TRAIN_TIMESTEPS, warped_timesteps
from pipelines.wan.transformer import CausalWanTransformer

WAN_1_3B = dict(
    num_attention_heads=12, attention_head_dim=128, ffn_dim=8960, num_layers=30, text_dim=4096
)
TINY = dict(num_attention_heads=2, attention_head_dim=16, ffn_dim=64, num_layers=2, text_dim=32)
VAE_TEMPORAL = 4
"""Video frames per latent frame after the first (Wan's VAE compresses time 4x)."""


def build_vae(tiny: bool, device: torch.device, dtype: torch.dtype):
    from diffusers import AutoencoderKLWan

    with device:
        vae = AutoencoderKLWan(base_dim=8, z_dim=16) if tiny else AutoencoderKLWan()
    return vae.to(dtype).eval()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.inference_mode()
def run(args: argparse.Namespace) -> dict[str, object]:
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    with device:
        model = CausalWanTransformer(**(TINY if args.tiny else WAN_1_3B))
    model = model.to(dtype).eval()
    vae = build_vae(args.tiny, device, dtype) if not args.no_vae else None
    params = sum(p.numel() for p in model.parameters())
    lat_h, lat_w = args.height // 8, args.width // 8
    text = torch.randn(1, 512, model.config.text_dim, device=device, dtype=dtype)
    cache = model.new_cache(sink_frames=args.sink_frames, window_frames=args.window_frames)
    timesteps = warped_timesteps()
    block_seconds, decode_seconds, first_frame_s = [], [], None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for b in range(args.blocks):
        sync(device)
        t0 = time.perf_counter()
        first = b * args.block_frames
        shape = (1, 16, args.block_frames, lat_h, lat_w)
        x = torch.randn(shape, device=device, dtype=dtype)
        for i, t in enumerate(timesteps):
            flow = model.forward_block(x, t, text, cache, start_frame=first, update_cache=False)
            x0 = x - (t / NUM_TRAIN_TIMESTEPS) * flow
            if i + 1 < len(timesteps):
                sigma = timesteps[i + 1] / NUM_TRAIN_TIMESTEPS
                x = (1 - sigma) * x0 + sigma * torch.randn_like(x0)
        model.forward_block(x0, 0.0, text, cache, start_frame=first, update_cache=True)
        sync(device)
        t1 = time.perf_counter()
        if vae is not None:
            vae.decode(x0)
        sync(device)
        t2 = time.perf_counter()
        if first_frame_s is None:
            first_frame_s = t2 - start
        block_seconds.append(t2 - t0)
        decode_seconds.append(t2 - t1)
    steady = block_seconds[1:] or block_seconds
    video_frames = VAE_TEMPORAL * args.block_frames
    return {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "params_m": round(params / 1e6, 1),
        "size": f"{args.width}x{args.height}",
        "blocks": args.blocks,
        "latent_frames_per_block": args.block_frames,
        "steps": len(timesteps),
        "sink_frames": args.sink_frames,
        "window_frames": args.window_frames,
        "fps_median": round(video_frames / statistics.median(steady), 2),
        "block_ms_median": round(1000 * statistics.median(steady), 1),
        "decode_ms_median": round(
            1000 * statistics.median(decode_seconds[1:] or decode_seconds), 1
        ),
        "time_to_first_frame_s": round(first_frame_s or 0.0, 3),
        "peak_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2)
        if device.type == "cuda"
        else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--block-frames", type=int, default=3)
    parser.add_argument("--sink-frames", type=int, default=3)
    parser.add_argument("--window-frames", type=int, default=9)
    parser.add_argument("--width", type=int, default=832)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--no-vae", action="store_true", help="Time the transformer only.")
    parser.add_argument("--tiny", action="store_true", help="Tiny random config (CPU check).")
    args = parser.parse_args()
    if args.tiny:
        args.width, args.height, args.blocks = 64, 32, 3
    print(json.dumps(run(args)))


if __name__ == "__main__":
    main()
