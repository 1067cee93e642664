"""Side by side: this project's Wan transformer against the published reference code (JSON).

python benchmarks/wan_reference.py --reference PATH [--cache longlive global] [--blocks 10]
    [--attention auto|cudnn|flash|efficient] [--compile] [--repeats 2] [--profile DIR] [--tiny]

PATH is a checkout of guandeh17/Self-Forcing (or of NVlabs/LongLive at its Wan2.1-1.3B
version): its `wan/modules/causal_model.py` is imported from there at run time, never copied
into this repository. Both transformers are built at Wan2.1-T2V-1.3B size from the same random
weights (the reference's own initialisation, its zeroed output layer redrawn, loaded into
`CausalWanTransformer` through `pipelines.wan.weights`) and run the same stream: blocks of 3
latent frames, each the 4 published denoising steps (x0 prediction, re-noise) and the t=0 pass
that writes the block into the KV cache, from the same noise and prompt embeddings. Only the
transformer is timed (no text encoder, no decoder).

Cache configurations: `longlive` (3-frame sink + 9-frame window; the reference as
`local_attn_size=12, sink_size=3`) and `global` (every frame kept, Self-Forcing's default; its
preallocated cache holds 21 frames, so that stream is 7 blocks). The reference calls the
flash-attn package, which has no wheel for every torch; here its two attention entry points
are rerouted to torch's SDPA in its own (batch, tokens, heads, dim) layout, so both models run
the same attention kernels, picked by `--attention` for both.

Prints one JSON line per cache configuration: per model the block times (ms; the median is
over the blocks after the first; `steady` over the blocks that see a full window) and, from a
second stream in the same process, the run-to-run spread; the relative difference of the
models' outputs (first pass, same inputs; and the last block's x0 after both streams ran on
their own outputs); with `--compile`, our compile time. `--profile DIR` writes a
torch.profiler table of one steady block per model there. `--tiny` runs tiny configs (a CPU
check of this script and of float32 parity).
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.wan import WAN_1_3B
from pipelines.wan.layers import attention_kernel
from pipelines.wan.schedule import NUM_TRAIN_TIMESTEPS, renoise, warped_timesteps
from pipelines.wan.transformer import CausalWanTransformer
from pipelines.wan.weights import load_wan_weights

BLOCK_FRAMES = 3
REFERENCE_GLOBAL_FRAMES = 21
"""Self-Forcing's global cache holds 32760 tokens: 21 frames of 1560 (832x480)."""
CACHES: dict[str, tuple[int, int | None]] = {"longlive": (3, 9), "global": (0, None)}
"""Our (sink_frames, window_frames) per configuration; the reference's window counts the sink."""
PROFILED_BLOCK = 3
"""Frames 9-11: the first block that sees 12 frames (a full LongLive window)."""
HEAD_INIT_STD = 0.02
"""Wan zero-initialises its output layer; redrawn so outputs (and their parity) mean something."""


@dataclass(frozen=True)
class Size:
    """Model and input sizes: all that differs with `--tiny`."""

    heads: int
    head_dim: int
    ffn_dim: int
    layers: int
    text_dim: int
    channels: int
    freq_dim: int
    latent: tuple[int, int]
    text_tokens: int

    def ours(self) -> dict[str, object]:
        return {
            "num_attention_heads": self.heads,
            "attention_head_dim": self.head_dim,
            "ffn_dim": self.ffn_dim,
            "num_layers": self.layers,
            "text_dim": self.text_dim,
            "in_channels": self.channels,
            "out_channels": self.channels,
            "freq_dim": self.freq_dim,
        }

    def reference(self, sink: int, window: int | None) -> dict[str, object]:
        return {
            "model_type": "t2v",
            "patch_size": (1, 2, 2),
            "text_len": self.text_tokens,
            "in_dim": self.channels,
            "dim": self.heads * self.head_dim,
            "ffn_dim": self.ffn_dim,
            "freq_dim": self.freq_dim,
            "text_dim": self.text_dim,
            "out_dim": self.channels,
            "num_heads": self.heads,
            "num_layers": self.layers,
            "local_attn_size": -1 if window is None else sink + window,
            "sink_size": sink,
            "qk_norm": True,
            "cross_attn_norm": True,
            "eps": 1e-6,
        }

    @property
    def tokens_per_frame(self) -> int:
        return (self.latent[0] // 2) * (self.latent[1] // 2)


FULL = Size(
    heads=int(WAN_1_3B["num_attention_heads"]),  # type: ignore[call-overload]
    head_dim=int(WAN_1_3B["attention_head_dim"]),  # type: ignore[call-overload]
    ffn_dim=int(WAN_1_3B["ffn_dim"]),  # type: ignore[call-overload]
    layers=int(WAN_1_3B["num_layers"]),  # type: ignore[call-overload]
    text_dim=int(WAN_1_3B["text_dim"]),  # type: ignore[call-overload]
    channels=16,
    freq_dim=256,
    latent=(60, 104),
    text_tokens=512,
)
TINY = Size(
    heads=2,
    head_dim=16,
    ffn_dim=64,
    layers=2,
    text_dim=8,
    channels=4,
    freq_dim=16,
    latent=(4, 4),
    text_tokens=6,
)


# -- the reference, imported from a checkout ---------------------------------------------------


def sdpa_blhd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *_: object, **__: object):  # type: ignore[no-untyped-def]
    """The reference's `attention` / `flash_attention` ((batch, tokens, heads, dim) in and out,
    no padding masks: every call here has full-length sequences) on torch's SDPA."""
    out = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    )
    return out.transpose(1, 2)


def load_reference(path: Path) -> type[torch.nn.Module]:
    """`CausalWanModel` from a Self-Forcing / LongLive checkout, its attention on SDPA.

    Imports `wan/modules/causal_model.py` without running `wan/__init__.py` (which imports the
    whole Wan codebase: T5, VAE, CLIP); LongLive's memory helpers are stubbed (unused here).
    """
    for name in [n for n in sys.modules if n == "wan" or n.startswith(("wan.", "utils"))]:
        del sys.modules[name]
    for name, folder in (("wan", path / "wan"), ("wan.modules", path / "wan" / "modules")):
        package = types.ModuleType(name)
        package.__path__ = [str(folder)]
        sys.modules[name] = package
    if (path / "utils" / "memory.py").exists():
        utils = types.ModuleType("utils")
        utils.__path__ = []
        sys.modules["utils"] = utils
        for stub in ("utils.memory", "utils.debug_option"):
            module = types.ModuleType(stub)
            module.__getattr__ = lambda _name: False  # type: ignore[method-assign]
            sys.modules[stub] = module
    causal = importlib.import_module("wan.modules.causal_model")
    model = importlib.import_module("wan.modules.model")
    causal.attention = sdpa_blhd  # type: ignore[attr-defined]
    model.flash_attention = sdpa_blhd  # type: ignore[attr-defined]
    return causal.CausalWanModel  # type: ignore[no-any-return]


def build_models(
    reference_class: type[torch.nn.Module],
    size: Size,
    cache: str,
    device: torch.device,
    dtype: torch.dtype,
    seed: int = 0,
) -> tuple[torch.nn.Module, CausalWanTransformer]:
    """The reference with its own random initialisation, and ours with the same weights."""
    sink, window = CACHES[cache]
    torch.manual_seed(seed)
    with device:
        reference = reference_class(**size.reference(sink, window))
        torch.nn.init.normal_(reference.head.head.weight, std=HEAD_INIT_STD)
        ours = CausalWanTransformer(**size.ours())  # type: ignore[arg-type]
    load_wan_weights(ours, reference.state_dict())
    return reference.to(dtype).eval(), ours.to(dtype).eval()


# -- one model's stream ------------------------------------------------------------------------

Step = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]
"""(latents (b, c, f, h, w), per-frame timesteps (b, f), start frame) -> flow prediction."""


def reference_stepper(
    model: torch.nn.Module, size: Size, cache: str, frames: int, text: torch.Tensor
) -> tuple[Step, Step]:
    """Noisy and cache-writing passes of the reference, with caches laid out as its pipeline's
    `_initialize_kv_cache` (the window's tokens, or the whole stream's) and cross cache."""
    sink, window = CACHES[cache]
    tokens = size.tokens_per_frame
    held = (sink + window if window is not None else frames) * tokens
    batch, device, dtype = text.shape[0], text.device, text.dtype
    shape = (batch, held, size.heads, size.head_dim)
    kv_cache = [
        {
            "k": torch.zeros(shape, device=device, dtype=dtype),
            "v": torch.zeros(shape, device=device, dtype=dtype),
            "global_end_index": torch.tensor([0], dtype=torch.long, device=device),
            "local_end_index": torch.tensor([0], dtype=torch.long, device=device),
        }
        for _ in range(size.layers)
    ]
    cross_shape = (batch, size.text_tokens, size.heads, size.head_dim)
    cross_cache = [
        {
            "k": torch.zeros(cross_shape, device=device, dtype=dtype),
            "v": torch.zeros(cross_shape, device=device, dtype=dtype),
            "is_init": False,
        }
        for _ in range(size.layers)
    ]

    def step(x: torch.Tensor, t: torch.Tensor, start: int) -> torch.Tensor:
        return model(  # type: ignore[no-any-return]
            x,
            t=t,
            context=text,
            seq_len=held,
            kv_cache=kv_cache,
            crossattn_cache=cross_cache,
            current_start=start * tokens,
        )

    return step, step  # the reference writes its cache on every pass


def ours_stepper(model: CausalWanTransformer, cache: str, text: torch.Tensor) -> tuple[Step, Step]:
    sink, window = CACHES[cache]
    kv = model.new_cache(sink_frames=sink, window_frames=window)

    def noisy(x: torch.Tensor, t: torch.Tensor, start: int) -> torch.Tensor:
        return model.forward_block(x, t, text, kv, start_frame=start, update_cache=False)

    def clean(x: torch.Tensor, t: torch.Tensor, start: int) -> torch.Tensor:
        return model.forward_block(x, t, text, kv, start_frame=start, update_cache=True)

    return noisy, clean


@dataclass
class Inputs:
    """Everything random a stream consumes, drawn once and shared by both models."""

    noise: list[torch.Tensor]
    renoise: list[list[torch.Tensor]]
    text: torch.Tensor


def draw_inputs(size: Size, blocks: int, device: torch.device, dtype: torch.dtype) -> Inputs:
    generator = torch.Generator(device=device).manual_seed(1)

    def normal(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=generator, device=device, dtype=dtype)

    latent = (1, size.channels, BLOCK_FRAMES, *size.latent)
    steps = len(warped_timesteps())
    return Inputs(
        noise=[normal(*latent) for _ in range(blocks)],
        renoise=[[normal(*latent) for _ in range(steps - 1)] for _ in range(blocks)],
        text=normal(1, size.text_tokens, size.text_dim),
    )


def run_stream(
    noisy: Step, clean: Step, inputs: Inputs, blocks: range | None = None
) -> tuple[list[float], list[torch.Tensor], torch.Tensor]:
    """The Self-Forcing loop over `blocks` (default all); returns seconds per block, each
    block's x0 and the first flow prediction."""
    timesteps = warped_timesteps()
    seconds, clean_blocks = [], []
    first_flow = None
    device = inputs.text.device
    for index in blocks if blocks is not None else range(len(inputs.noise)):
        noise, start = inputs.noise[index], index * BLOCK_FRAMES
        _sync(device)
        began = time.perf_counter()
        x = x0 = noise
        for i, t in enumerate(timesteps):
            level = torch.full((1, BLOCK_FRAMES), t, device=device)
            flow = noisy(x, level, start)
            if first_flow is None:
                first_flow = flow.float().clone()
            x0 = (x.float() - (t / NUM_TRAIN_TIMESTEPS) * flow.float()).to(x.dtype)
            if i + 1 < len(timesteps):
                x = renoise(x0, inputs.renoise[index][i], timestep=timesteps[i + 1])
        clean(x0, torch.zeros(1, BLOCK_FRAMES, device=device), start)
        _sync(device)
        seconds.append(time.perf_counter() - began)
        clean_blocks.append(x0)
    assert first_flow is not None
    return seconds, clean_blocks, first_flow


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| in float64."""
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm())


def summary(seconds: list[float], steady_from: int) -> dict[str, object]:
    ms = [1000 * s for s in seconds]
    later = ms[1:] or ms
    return {
        "block_ms": [round(m, 1) for m in ms],
        "median_ms": round(statistics.median(later), 1),
        "steady_median_ms": round(statistics.median(ms[steady_from:] or later), 1),
        "mean_ms": round(statistics.fmean(later), 1),
    }


def profile_block(noisy: Step, clean: Step, inputs: Inputs, path: Path) -> None:
    """A torch.profiler table (by device time) of block PROFILED_BLOCK of a stream."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if inputs.text.device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    block = min(PROFILED_BLOCK, len(inputs.noise) - 1)
    run_stream(noisy, clean, inputs, range(block))
    with profile(activities=activities) as prof:
        run_stream(noisy, clean, inputs, range(block, block + 1))
    sort = "cuda_time_total" if len(activities) > 1 else "cpu_time_total"
    table = prof.key_averages().table(sort_by=sort, row_limit=45, max_name_column_width=80)
    path.write_text(table)


def compare(args: argparse.Namespace, cache: str) -> dict[str, object]:
    size = TINY if args.tiny else FULL
    device = torch.device(args.device)
    dtype = torch.float32 if args.tiny or device.type == "cpu" else torch.bfloat16
    sink, window = CACHES[cache]
    blocks = args.blocks
    if window is None:
        blocks = min(blocks, REFERENCE_GLOBAL_FRAMES // BLOCK_FRAMES)
    reference_class = load_reference(Path(args.reference))
    reference, ours = build_models(reference_class, size, cache, device, dtype)
    inputs = draw_inputs(size, blocks, device, dtype)
    compile_s = None
    result: dict[str, object] = {
        "cache": cache,
        "sink_frames": sink,
        "window_frames": window,
        "blocks": blocks,
        "attention": args.attention,
        "compile": args.compile,
        "dtype": str(dtype).removeprefix("torch."),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "size": f"{size.latent[1] * 8}x{size.latent[0] * 8}",
    }
    steady_from = 1 if window is None else -(-(sink + window) // BLOCK_FRAMES)
    with torch.inference_mode(), attention_kernel(args.attention):
        if args.compile:
            ours.compile_blocks()
            began = time.perf_counter()
            run_stream(*ours_stepper(ours, cache, inputs.text), inputs, range(1))
            compile_s = round(time.perf_counter() - began, 1)
        runs: dict[str, list[list[float]]] = {"reference": [], "ours": []}
        outputs: dict[str, tuple[list[torch.Tensor], torch.Tensor]] = {}
        for _ in range(args.repeats + 1):  # the first round warms up both
            for name in runs:
                noisy, clean = (
                    reference_stepper(reference, size, cache, blocks * BLOCK_FRAMES, inputs.text)
                    if name == "reference"
                    else ours_stepper(ours, cache, inputs.text)
                )
                seconds, x0s, flow = run_stream(noisy, clean, inputs)
                runs[name].append(seconds)
                outputs[name] = (x0s, flow)
        for name, rounds in runs.items():
            timed = rounds[1:]
            best = summary(timed[0], steady_from)
            best["repeat_median_ms"] = [summary(r, steady_from)["median_ms"] for r in timed]
            result[name] = best
        result["ours_vs_reference"] = round(
            result["ours"]["median_ms"] / result["reference"]["median_ms"],  # type: ignore[index]
            3,
        )
        result["first_pass_relative_difference"] = relative(
            outputs["ours"][1], outputs["reference"][1]
        )
        result["last_x0_relative_difference"] = relative(
            outputs["ours"][0][-1], outputs["reference"][0][-1]
        )
        if compile_s is not None:
            result["compile_s"] = compile_s
        if args.profile:
            folder = Path(args.profile)
            folder.mkdir(parents=True, exist_ok=True)
            profile_block(
                *reference_stepper(reference, size, cache, blocks * BLOCK_FRAMES, inputs.text),
                inputs,
                folder / f"profile_reference_{cache}.txt",
            )
            profile_block(
                *ours_stepper(ours, cache, inputs.text),
                inputs,
                folder / f"profile_ours_{cache}.txt",
            )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", required=True, help="Self-Forcing / LongLive checkout.")
    parser.add_argument("--cache", nargs="+", choices=sorted(CACHES), default=sorted(CACHES))
    parser.add_argument("--blocks", type=int, default=10, help="Blocks per stream (global: <= 7).")
    parser.add_argument(
        "--attention", choices=["auto", "cudnn", "flash", "efficient"], default="auto"
    )
    parser.add_argument("--compile", action="store_true", help="Compile our blocks' regions.")
    parser.add_argument("--repeats", type=int, default=2, help="Timed streams per model.")
    parser.add_argument("--profile", help="Folder for profiler tables of one stream per model.")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="Tiny models, float32 (CPU check).")
    args = parser.parse_args()
    if args.blocks < 2 or args.repeats < 1:
        parser.error("--blocks must be >= 2 and --repeats >= 1")
    for cache in args.cache:
        print(json.dumps(compare(args, cache)), flush=True)


if __name__ == "__main__":
    main()
