"""Train `tiny_ar` from scratch on puppet renders: `python -m pipelines.tiny_ar.train --out DIR`.

Recipe (settings below, saved next to the weights so any run can be repeated):
1. Teacher forcing with diffusion forcing: each clip is [reference, clean context, noisy
   frames]; every block of noisy frames gets its own noise level and is denoised against the
   clean frames before it (the mask in `TinyARTransformer.forward`); the loss is MSE on x0.
2. Context noise: the clean context is lightly noised (its level is an input), so the model does
   not trust its cache blindly.
3. Self rollouts: in the second part of training, a share of batches replace the clean context
   by the model's own few-step generation of the same clip (no gradient), so it learns to
   recover from its own mistakes instead of compounding them over minutes of streaming. The
   puppet is deterministic given the conditioning, so the rendered frames stay the right target.
4. Responsiveness: the cache makes copying the last frames the cheapest answer, and a new
   expression changes a few dozen pixels, so a share of clips receive a new directive part-way
   through (`directive_share`) and the pixels each directive changes weigh more in the loss
   (`directive_weight`): the conditioning, not the cache, has to explain them.
5. EMA of the weights is what gets saved.
Resumable: a checkpoint (optimiser, raw and EMA weights, step) is written every `save_every`
steps and on exit; rerunning with the same `--out` continues. Runs on CPU or CUDA (bf16).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from pipelines.tiny_ar.data import directive_pixels, random_clips
from pipelines.tiny_ar.model import TinyARTransformer
from pipelines.tiny_ar.sampling import generate_block, sigmas_for

log = logging.getLogger("tiny_ar.train")

CHECKPOINT = "checkpoint.pt"
SETTINGS = "train_settings.json"


class TrainSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: int = Field(default=20_000, ge=1)
    minutes: float = Field(default=120.0, gt=0, description="Stop (and save) after this long.")
    batch: int = Field(default=32, ge=1)
    lr: float = Field(default=4e-4, gt=0)
    warmup: int = Field(default=300, ge=0)
    weight_decay: float = Field(default=0.01, ge=0)
    ema: float = Field(default=0.999, ge=0, lt=1)
    clip_frames: int = Field(default=12, ge=2)
    fps: float = Field(default=12.0, gt=0)
    context_noise: float = Field(default=0.05, ge=0, le=1)
    rollout_after: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Progress (the larger of steps/`steps` and time/`minutes`) before rollouts.",
    )
    rollout_share: float = Field(default=0.3, ge=0, le=1, description="Share of later batches.")
    detail_weight: float = Field(
        default=0.0, ge=0, description="Extra loss weight on fine detail (eyes, mouth, edges)."
    )
    directive_weight: float = Field(
        default=0.0,
        ge=0,
        description="Extra loss weight on the pixels the current action and expression change.",
    )
    directive_share: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Share of clips that receive a new directive part-way through.",
    )
    trainable: list[str] = Field(
        default_factory=list,
        description="Train only parameters whose names start with one of these (empty: all).",
    )
    seed: int = 0
    workers: int = Field(default=2, ge=0)
    save_every: int = Field(default=1000, ge=1)
    log_every: int = Field(default=100, ge=1)
    model: dict[str, object] = Field(default_factory=dict, description="TinyARTransformer config.")


class ClipStream(IterableDataset):
    """Endless random clips as tensors; each data-loader worker draws its own stream. The
    last tensor marks the directives' pixels (all zero unless `directive_weight` is set)."""

    def __init__(self, settings: TrainSettings, size: tuple[int, int], seed: int) -> None:
        self.settings, self.size, self.seed = settings, size, seed

    def __iter__(self):
        info = get_worker_info()
        worker = info.id if info is not None else 0
        for clip in random_clips(
            self.seed * 1000 + worker,
            frames=self.settings.clip_frames,
            fps=self.settings.fps,
            size=self.size,
            directive_share=self.settings.directive_share,
        ):
            if self.settings.directive_weight > 0:
                shown = torch.from_numpy(directive_pixels(clip))[:, None]
            else:
                shown = torch.zeros(len(clip.frames), 1, *self.size, dtype=torch.bool)
            yield (
                torch.from_numpy(clip.reference).permute(0, 3, 1, 2),
                torch.from_numpy(clip.reference_features),
                torch.from_numpy(clip.frames).permute(0, 3, 1, 2),
                torch.from_numpy(clip.features),
                shown,
            )


def to_unit(frames: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 (…, 3, H, W) -> float in [-1, 1] on `device`."""
    return frames.to(device, non_blocking=True).float() / 127.5 - 1.0


def block_sigmas(batch: int, frames: int, block: int, rng: random.Random) -> torch.Tensor:
    """One noise level per block (diffusion forcing): half from the sampler's own few-step
    levels, half uniform on the warped grid, so both the exact steps and all levels train."""
    blocks = -(-frames // block)
    levels = []
    for _ in range(batch * blocks):
        if rng.random() < 0.5:
            levels.append(rng.choice(sigmas_for(rng.choice((2, 3, 4)))))
        else:
            levels.append(sigmas_for(1_000)[rng.randrange(1_000)])
    sig = torch.tensor(levels).view(batch, blocks).repeat_interleave(block, dim=1)
    return sig[:, :frames]


def detail_weights(frames: torch.Tensor, strength: float) -> torch.Tensor:
    """Per-pixel loss weights, 1 + strength * local contrast (normalised to mean 1): a face
    is a few pixels at this size, and plain MSE would let it blur into the skin."""
    if strength == 0:
        return torch.ones_like(frames[:, :, :1])
    flat = frames.flatten(0, 1)
    contrast = (flat - F.avg_pool2d(flat, 3, 1, 1, count_include_pad=False)).abs().mean(1, True)
    contrast = contrast / contrast.mean((2, 3), keepdim=True).clamp_min(1e-6)
    return (1 + strength * contrast).unflatten(0, frames.shape[:2]) / (1 + strength)


@torch.no_grad()
def rollout(
    model: TinyARTransformer, reference, reference_features, features, *, steps: int
) -> torch.Tensor:
    """The model's own streaming generation of a clip, given its conditioning."""
    block = model.config.block_frames
    cache = model.start_stream(reference, reference_features)
    frames = [
        generate_block(model, cache, features[:, s : s + block], s, steps=steps)
        for s in range(0, features.shape[1], block)
    ]
    return torch.cat(frames, dim=1)


def trainable_parameters(model: torch.nn.Module, prefixes: list[str]) -> list[torch.nn.Parameter]:
    """The parameters a run updates; the rest are frozen. Fine-tuning only the conditioning
    path (e.g. `feature_embed`) teaches the model to read a directive without small, noisy
    batches moving the renderer that stages 1-3 trained."""
    chosen = []
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(not prefixes or name.startswith(tuple(prefixes)))
        if parameter.requires_grad:
            chosen.append(parameter)
    if not chosen:
        raise ValueError(f"no parameter name starts with any of {prefixes}")
    return chosen


def train(
    out: Path, settings: TrainSettings, *, device: torch.device, init: Path | None = None
) -> None:
    """Train into `out`, resuming from its checkpoint if there is one, else starting from the
    weights in `init` (fine-tuning) or from scratch."""
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(settings.seed)
    rng = random.Random(settings.seed)
    if init is not None:
        model = TinyARTransformer.from_pretrained(init, torch_dtype=torch.float32)
        if settings.model:  # grow the trained model (a refiner): its weights, new parts at init
            config = {k: v for k, v in model.config.items() if not k.startswith("_")}
            grown = TinyARTransformer(**{**config, **settings.model})
            unexpected = grown.load_state_dict(model.state_dict(), strict=False).unexpected_keys
            if unexpected:
                raise ValueError(f"{init} has weights this model lacks: {unexpected}")
            model = grown
        model = model.to(device)
    else:
        model = TinyARTransformer(**settings.model).to(device)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    trained = trainable_parameters(model, settings.trainable)
    optimizer = torch.optim.AdamW(
        trained, lr=settings.lr, weight_decay=settings.weight_decay, betas=(0.9, 0.99)
    )
    step = 0
    checkpoint = out / CHECKPOINT
    if checkpoint.exists():
        state = torch.load(checkpoint, map_location=device)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        step = state["step"]
        log.info("resumed from step %d", step)
    (out / SETTINGS).write_text(json.dumps(settings.model_dump(), indent=2) + "\n")

    def save() -> None:
        copy.deepcopy(ema).half().save_pretrained(out)  # float16 on disk keeps it a few MB
        torch.save(
            {
                "model": model.state_dict(),
                "ema": ema.state_dict(),
                "optimizer": optimizer.state_dict(),
                "step": step,
            },
            checkpoint,
        )
        log.info("saved step %d to %s", step, out)

    cfg = model.config
    loader = DataLoader(
        ClipStream(settings, (cfg.height, cfg.width), settings.seed + step),
        batch_size=settings.batch,
        num_workers=settings.workers,
        pin_memory=device.type == "cuda",
        persistent_workers=settings.workers > 0,
        prefetch_factor=4 if settings.workers > 0 else None,
    )
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    started, losses, last_log = time.monotonic(), [], time.monotonic()
    for reference, reference_features, frames, features, shown in loader:
        progress = max(
            step / settings.steps, (time.monotonic() - started) / (60 * settings.minutes)
        )
        if progress >= 1.0:
            break
        reference, frames = to_unit(reference, device), to_unit(frames, device)
        reference_features, features = reference_features.to(device), features.to(device)
        b, length = frames.shape[:2]
        context = frames
        if progress >= settings.rollout_after and rng.random() < settings.rollout_share:
            model.eval()
            with autocast:
                context = rollout(
                    model, reference, reference_features, features, steps=rng.choice((2, 3))
                ).float()
            model.train()
        context_sigma = torch.rand(b, length, device=device) * settings.context_noise
        s = context_sigma[..., None, None, None]
        context = (1 - s) * context + s * torch.randn_like(context)
        sigma = block_sigmas(b, length, cfg.block_frames, rng).to(device)
        sv = sigma[..., None, None, None]
        noisy = (1 - sv) * frames + sv * torch.randn_like(frames)
        lr = settings.lr * min(1.0, (step + 1) / max(settings.warmup, 1))
        for group in optimizer.param_groups:
            group["lr"] = lr
        with autocast:
            x0 = model(
                reference,
                reference_features,
                context,
                context_sigma,
                features,
                noisy,
                sigma,
                features,
            )
        weights = detail_weights(frames, settings.detail_weight) * (
            1 + settings.directive_weight * shown.to(device)
        )
        loss = (weights * (x0.float() - frames) ** 2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        optimizer.step()
        with torch.no_grad():
            for e, p in zip(ema.parameters(), model.parameters(), strict=True):
                e.lerp_(p, 1.0 - settings.ema)
        step += 1
        losses.append(loss.item())
        if step % settings.log_every == 0:
            now = time.monotonic()
            log.info(
                "step %d loss %.5f lr %.2e %.2f steps/s",
                step,
                sum(losses) / len(losses),
                lr,
                settings.log_every / (now - last_log),
            )
            losses, last_log = [], now
        if step % settings.save_every == 0:
            save()
    save()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="Weights and checkpoint dir.")
    parser.add_argument("--settings", type=Path, help="JSON TrainSettings (default: built-in).")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="Override one setting, e.g. --set steps=500 --set batch=8.",
    )
    parser.add_argument("--init", type=Path, help="Fine-tune from these weights (a save dir).")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    values = json.loads(args.settings.read_text()) if args.settings else {}
    for item in args.set:
        key, _, value = item.partition("=")
        values[key] = json.loads(value)
    torch.set_flush_denormal(True)
    train(args.out, TrainSettings(**values), device=torch.device(args.device), init=args.init)


if __name__ == "__main__":
    main()
