"""How well `tiny_ar` renders the persona, measured against its puppet teacher (JSON).

python benchmarks/tiny_ar_quality.py [--clips 48] [--trials 3] [--minutes 10] [--steps 3]
                                     [--guidance 0] [--only fidelity responsiveness identity]

- fidelity: PSNR and SSIM of the next block when the cache holds the puppet's true frames
  (teacher-forced), and of free-running 4-second streams.
- responsiveness: for each action and each expression, a stream idles, receives the directive,
  and every generated frame is classified by nearest neighbour among puppet renders of the same
  moment under every label (a classifier built from puppet frames, no training needed);
  reported as accuracy at the middle of the action (over `--trials` characters per label), as
  the share of all frames from the second block after the directive on that are recognised
  (frame_accuracy: many more samples, so less noisy), and as blocks until first recognised.
  Only frames where the label already looks different from idle or neutral are counted, and
  labels that draw the same picture (`stand_up` while standing is `idle`) count as one.
  frame_accuracy_ceiling is the same count on the puppet's own frames of the label plus this
  model's error on the same stream without the directive: what a model that rendered every
  directive perfectly, and everything else as well as this one, would score at this size. It
  tells a face too small to read at 64x64 (lost in the model's ordinary error) from a face the
  model fails to draw.
- identity: one long stream with a random directive every ~3 s; PSNR and SSIM against the
  puppet's render of the same conditioning, and mean colour drift, around 1, 5 and 10 minutes.
- display: each shipped card streamed by the pipeline itself at display size over a 12 s
  script (idle, wave, sit down, idle): PSNR against the puppet at that size, patch-grid
  strength over the teacher's flat areas, and each card colour's error
  (`pipelines/tiny_ar/display_metrics.py`).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.conditioning import ACTION_SECONDS, ACTIONS, EXPRESSIONS, Timeline
from pipelines.tiny_ar import TinyARConfig
from pipelines.tiny_ar.data import (
    random_clips,
    random_session,
    reference_conditioning,
    render_clip,
    render_frames,
    render_reference,
)
from pipelines.tiny_ar.display_metrics import card_colours, display_psnr, grid_levels
from pipelines.tiny_ar.features import features_for
from pipelines.tiny_ar.model import TinyARTransformer
from pipelines.tiny_ar.pipeline import to_unit
from pipelines.tiny_ar.sampling import generate_block

REACTION_BLOCKS = 8
"""Blocks generated after a directive when testing responsiveness."""


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Frames in [-1, 1]."""
    mse = F.mse_loss(a, b).item() / 4.0
    return 10 * np.log10(1.0 / max(mse, 1e-12))


def ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean SSIM with an 11-pixel Gaussian window, frames (N, 3, H, W) in [-1, 1]."""
    a, b = (a.reshape(-1, *a.shape[-3:]) + 1) / 2, (b.reshape(-1, *b.shape[-3:]) + 1) / 2
    g = torch.exp(-((torch.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    w = (g[:, None] * g[None, :] / g.sum() ** 2).expand(3, 1, 11, 11)

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, w, groups=3)

    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    )
    return s.mean().item()


class Harness:
    def __init__(self, model: TinyARTransformer, steps: int, guidance: float) -> None:
        self.model, self.steps, self.guidance = model, steps, guidance
        self.block = model.config.block_frames
        self.size = (model.config.height, model.config.width)

    def stream(self, clip, seed: int = 0, *, teacher_forced: bool = False) -> torch.Tensor:
        """Generated frames of a clip; teacher-forced: each block against the true history."""
        g = torch.Generator().manual_seed(seed)
        features = torch.from_numpy(clip.features)[None]
        truth = to_unit(clip.frames)[None]
        cache = self.model.start_stream(
            to_unit(clip.reference)[None], torch.from_numpy(clip.reference_features)[None]
        )
        out = []
        for s in range(0, features.shape[1], self.block):
            f = features[:, s : s + self.block]
            x0 = generate_block(
                self.model,
                cache,
                f,
                s,
                steps=self.steps,
                generator=g,
                commit=not teacher_forced,
                expression_guidance=self.guidance,
            )
            if teacher_forced:
                self.model.commit_block(truth[:, s : s + self.block], f, cache, s)
            out.append(x0)
        return torch.cat(out, 1)[0]


def fidelity(h: Harness, clips: int) -> dict[str, float]:
    source = random_clips(12345, frames=48, fps=12.0, size=h.size)
    tf_psnr, tf_ssim, free_psnr, free_ssim = [], [], [], []
    for i in range(clips):
        clip = next(source)
        truth = to_unit(clip.frames)
        tf = h.stream(clip, i, teacher_forced=True)
        free = h.stream(clip, i)
        tf_psnr.append(psnr(tf[h.block :], truth[h.block :]))
        tf_ssim.append(ssim(tf[h.block :], truth[h.block :]))
        free_psnr.append(psnr(free, truth))
        free_ssim.append(ssim(free, truth))
    return {
        "teacher_forced_psnr": round(statistics.median(tf_psnr), 2),
        "teacher_forced_ssim": round(statistics.median(tf_ssim), 3),
        "free_running_4s_psnr": round(statistics.median(free_psnr), 2),
        "free_running_4s_ssim": round(statistics.median(free_ssim), 3),
    }


def _directive_stream(kind: str, label: str, seed: int, fps: float, blocks_before: int):
    """Conditioning of an idle stream that receives one directive at a block boundary, the
    frame index of the directive, and the same stream under every candidate label."""
    rng = random.Random(seed)
    _, character = random_session(rng, frames=1, fps=fps)
    frames = (blocks_before + REACTION_BLOCKS) * 2
    at = blocks_before * 2

    def conditioning(chosen: str):
        timeline, out = Timeline(), []
        for i in range(frames):
            t = i / fps
            if i == at:
                if kind == "action":
                    timeline.set_action(chosen, t)  # type: ignore[arg-type]
                else:
                    timeline.set_expression(chosen, t)  # type: ignore[arg-type]
            out.append(timeline.sample(t))
        return out

    labels = ACTIONS if kind == "action" else EXPRESSIONS
    return character, at, conditioning(label), {c: conditioning(c) for c in labels}


def _recognised(
    generated: torch.Tensor, renders: dict[str, torch.Tensor], label: str, i: int
) -> bool:
    """Whether the puppet render of frame i closest to the generated frame i is the label's.
    Labels that draw the same picture count as one (`stand_up` while standing is `idle`)."""
    nearest = min(renders, key=lambda c: F.mse_loss(generated[i], renders[c][i]).item())
    return torch.equal(renders[nearest][i], renders[label][i])


def responsiveness(h: Harness, fps: float, trials: int) -> dict[str, object]:
    """Each label tried on `trials` random characters (trial k of label n uses seed n + 100k)."""
    result: dict[str, object] = {}
    for kind, labels in (("action", ACTIONS), ("expression", EXPRESSIONS)):
        hits, first_blocks, per_label, shown_frames, ceiling_frames = 0, [], {}, [], []
        rest = "idle" if kind == "action" else "neutral"
        for n, label in enumerate(labels):
            label_hits = 0
            for seed in range(n, n + 100 * trials, 100):
                character, at, cond, candidates = _directive_stream(kind, label, seed, fps, 4)
                generated = h.stream(render_clip(cond, character, h.size), seed)
                renders = {
                    c: to_unit(render_frames(cs, character, h.size)) for c, cs in candidates.items()
                }
                seconds = ACTION_SECONDS.get(label, 1.0) if kind == "action" else 1.0
                middle = min(at + int(seconds * fps / 2), len(cond) - 1)
                shows = partial(_recognised, generated, renders, label)
                label_hits += shows(middle)
                visible = [
                    i
                    for i in range(at, len(cond))
                    if not torch.equal(renders[rest][i], renders[label][i])
                ]
                scored = [i for i in visible if i >= at + h.block]
                shown_frames += [shows(i) for i in scored]
                if scored:
                    at_rest = h.stream(render_clip(candidates[rest], character, h.size), seed)
                    ideal = renders[label] + (at_rest - renders[rest])
                    ceiling_frames += [_recognised(ideal, renders, label, i) for i in scored]
                recognised = next((i for i in visible if shows(i)), None)
                if recognised is not None:
                    first_blocks.append((recognised - at) // h.block)
            hits += label_hits
            per_label[label] = label_hits
        result[f"{kind}_accuracy"] = round(hits / (len(labels) * trials), 3)
        result[f"{kind}_frame_accuracy"] = round(statistics.fmean(shown_frames), 3)
        result[f"{kind}_frame_accuracy_ceiling"] = round(statistics.fmean(ceiling_frames), 3)
        result[f"{kind}_first_block_median"] = (
            statistics.median(first_blocks) if first_blocks else None
        )
        result[f"{kind}_mid_correct_of_{trials}"] = per_label
    return result


def identity(h: Harness, minutes: float, fps: float) -> dict[str, object]:
    rng = random.Random(7)
    _, character = random_session(rng, frames=1, fps=fps)
    reference = to_unit(render_reference(character, h.size))
    cache = h.model.start_stream(
        reference[None], torch.from_numpy(features_for([reference_conditioning()]))[None]
    )
    g = torch.Generator().manual_seed(0)
    timeline = Timeline()
    next_change = 1.0
    checkpoints = [m for m in (1, 5, 10) if m <= minutes]
    window = int(5 * fps)  # 5 s of frames compared at each checkpoint
    total = int(minutes * 60 * fps)
    marks = {int(m * 60 * fps): m for m in checkpoints}
    report: dict[str, object] = {}
    collecting: list[tuple[torch.Tensor, torch.Tensor]] = []
    collecting_for = None
    started = time.perf_counter()
    for s in range(0, total, h.block):
        conds = []
        for i in range(s, s + h.block):
            t = i / fps
            if t >= next_change:
                if rng.random() < 0.6:
                    timeline.set_action(rng.choice(ACTIONS), t)  # type: ignore[arg-type]
                else:
                    timeline.set_expression(rng.choice(EXPRESSIONS), t)  # type: ignore[arg-type]
                next_change = t + rng.uniform(2.0, 4.0)
            conds.append(timeline.sample(t))
        x0 = generate_block(
            h.model,
            cache,
            torch.from_numpy(features_for(conds))[None],
            s,
            steps=h.steps,
            expression_guidance=h.guidance,
            generator=g,
        )[0]
        for m_frame, m in marks.items():
            if m_frame - window <= s < m_frame:
                collecting_for = m
        if collecting_for is not None:
            truth = to_unit(render_frames(conds, character, h.size))
            collecting.append((x0, truth))
            if s + h.block >= int(collecting_for * 60 * fps):
                gen = torch.cat([a for a, _ in collecting])
                tru = torch.cat([b for _, b in collecting])
                report[f"{collecting_for}min"] = {
                    "psnr": round(psnr(gen, tru), 2),
                    "ssim": round(ssim(gen, tru), 3),
                    "colour_drift": round(
                        (gen.mean((0, 2, 3)) - tru.mean((0, 2, 3))).abs().max().item() * 127.5, 2
                    ),
                }
                collecting, collecting_for = [], None
    report["stream_fps"] = round(total / (time.perf_counter() - started), 1)
    return report


DISPLAY_SCRIPT = ((0.0, "idle"), (3.0, "wave"), (6.0, "sit_down"), (9.0, "idle"))
DISPLAY_SECONDS = 12.0


def display(weights: str, steps: int, guidance: float) -> dict[str, object]:
    """Each shipped card as a visitor sees it: the pipeline itself, at its display size, over a
    12 s directive script, against the puppet drawn at that size for the same moments (see
    `pipelines.tiny_ar.display_metrics`)."""
    from persona.cards import default_cards
    from pipelines.puppet import PuppetConfig
    from pipelines.puppet.pipeline import PuppetPipeline
    from pipelines.tiny_ar.pipeline import TinyARPipeline

    report: dict[str, object] = {}
    for card in default_cards():
        character = card.to_character()
        tiny = TinyARPipeline(
            TinyARConfig(weights=weights, steps=steps, expression_guidance=guidance)
        )
        spec = tiny.spec
        puppet = PuppetPipeline(PuppetConfig(width=spec.width, height=spec.height, fps=spec.fps))
        tiny.reset(character)
        puppet.reset(character)
        timeline = Timeline()
        for at, action in DISPLAY_SCRIPT:
            timeline.set_action(action, at)  # type: ignore[arg-type]
        shown, teacher = [], []
        for s in range(0, int(DISPLAY_SECONDS * spec.fps), spec.chunk_frames):
            conditioning = [timeline.sample((s + i) / spec.fps) for i in range(spec.chunk_frames)]
            shown.append(tiny.step(conditioning))
            teacher.append(np.concatenate([puppet.step([c]) for c in conditioning]))
        frames, truth = np.concatenate(shown), np.concatenate(teacher)
        report[card.name] = {
            "display_psnr": round(display_psnr(frames, truth), 2),
            "grid_levels": round(grid_levels(frames, truth), 2),
            "card_colour_error": card_colours(frames, truth, card.appearance),
        }
    report["size"] = f"{spec.width}x{spec.height}"
    return report


PARTS = ("fidelity", "responsiveness", "identity", "display")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=TinyARConfig().weights)
    parser.add_argument("--steps", type=int, default=TinyARConfig().steps)
    parser.add_argument("--guidance", type=float, default=TinyARConfig().expression_guidance)
    parser.add_argument("--clips", type=int, default=48)
    parser.add_argument("--trials", type=int, default=3, help="Characters per label.")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--fps", type=float, default=12.0)
    parser.add_argument(
        "--only", nargs="+", choices=PARTS, default=PARTS, help="Measure only these parts."
    )
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    model = TinyARTransformer.from_pretrained(args.weights, torch_dtype=torch.float32).eval()
    h = Harness(model, args.steps, args.guidance)
    with torch.inference_mode():
        result = {"steps": args.steps, "expression_guidance": args.guidance}
        if "fidelity" in args.only:
            result["fidelity"] = fidelity(h, args.clips)
        if "responsiveness" in args.only:
            result["responsiveness"] = responsiveness(h, args.fps, args.trials)
        if "identity" in args.only:
            result["identity"] = identity(h, args.minutes, args.fps)
        if "display" in args.only:
            result["display"] = display(args.weights, args.steps, args.guidance)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
