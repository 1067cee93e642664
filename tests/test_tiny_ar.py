"""`tiny_ar`: the model's shapes and cache, save/load, the shipped weights, data and training."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipelines.conditioning import ACTIONS, Character, Conditioning, Timeline
from pipelines.registry import build_pipeline, list_pipelines
from pipelines.tiny_ar import TinyARConfig
from pipelines.tiny_ar.data import (
    directive_pixels,
    random_clips,
    random_session,
    render_clip,
    render_frames,
)
from pipelines.tiny_ar.features import FEATURE_SIZE, conditioning_features
from pipelines.tiny_ar.model import TinyARTransformer
from pipelines.tiny_ar.pipeline import to_unit
from pipelines.tiny_ar.train import TrainSettings, train

TINY = dict(height=16, width=24, patch_size=8, dim=64, depth=2, heads=2, window_frames=4)


def _tiny_model(seed: int = 0) -> TinyARTransformer:
    """A tiny model with every weight random (the zero-initialised gates too)."""
    torch.manual_seed(seed)
    model = TinyARTransformer(**TINY).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2)
    return model


def _inputs(batch: int, length: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    frames = lambda n: torch.randn(batch, n, 3, 16, 24, generator=g)  # noqa: E731
    features = lambda n: torch.randn(batch, n, FEATURE_SIZE, generator=g)  # noqa: E731
    return frames(1), features(1), frames(length), features(length), frames(length)


def test_shapes_and_patch_round_trip() -> None:
    model = _tiny_model()
    x = torch.randn(2, 3, 3, 16, 24)
    assert model.patchify(x).shape == (2, 3 * 2 * 3, 8 * 8 * 3)
    assert torch.equal(model.unpatchify(model.patchify(x), 3), x)
    ref, ref_f, context, features, noisy = _inputs(2, 4)
    out = model(ref, ref_f, context, torch.zeros(2, 4), features, noisy, torch.rand(2, 4), features)
    assert out.shape == noisy.shape


@pytest.mark.parametrize("length", [4, 10])  # inside the window, and past it (frames evicted)
def test_kv_cache_streaming_equals_full_block_causal_attention(length: int) -> None:
    """Block by block through the cache == one pass with the block-causal, windowed mask."""
    model = _tiny_model()
    ref, ref_f, context, features, noisy = _inputs(2, length)
    sigma = torch.rand(2, length)
    with torch.no_grad():
        full = model(ref, ref_f, context, torch.zeros(2, length), features, noisy, sigma, features)
        cache = model.start_stream(ref, ref_f)
        streamed = []
        for s in range(0, length, 2):
            block = slice(s, s + 2)
            streamed.append(
                model.denoise_block(noisy[:, block], sigma[:, block], features[:, block], cache, s)
            )
            model.commit_block(context[:, block], features[:, block], cache, s)
    assert len(cache.window_index) == min(length, model.config.window_frames)
    assert cache.window_k[0].shape[2] == len(cache.window_index) * model.tokens_per_frame
    torch.testing.assert_close(torch.cat(streamed, 1), full, atol=1e-5, rtol=1e-5)


def test_the_mask_hides_frames_outside_the_window_and_later_blocks() -> None:
    model = _tiny_model()
    mask = model.clip_attention_mask(10)[:: model.tokens_per_frame, :: model.tokens_per_frame]
    ctx, noisy = 1, 11  # first context and first noisy frame rows/columns
    window = model.config.window_frames
    # noisy frame 8 (block 4): sees the sink, the `window` context frames before its block and
    # its own noisy block, nothing else
    row = mask[noisy + 8]
    assert row[0] and row[ctx + 8 - window : ctx + 8].all()
    assert not row[ctx : ctx + 8 - window].any()
    assert not row[ctx + 8 : ctx + 10].any()  # its own clean frames do not exist yet
    assert row[noisy + 8 : noisy + 10].all() and not row[noisy : noisy + 8].any()
    assert not mask[0, 1:].any()  # the sink sees only itself


def test_save_and_load_round_trip(tmp_path) -> None:
    model = _tiny_model()
    model.save_pretrained(tmp_path)
    loaded = TinyARTransformer.from_pretrained(tmp_path).eval()
    ref, ref_f, context, features, noisy = _inputs(1, 4)
    with torch.no_grad():
        args = (ref, ref_f, context, torch.zeros(1, 4), features, noisy, torch.rand(1, 4), features)
        torch.testing.assert_close(loaded(*args), model(*args), atol=0, rtol=0)


def test_features_mix_cross_fades_and_are_fixed_size() -> None:
    timeline = Timeline()
    timeline.set_action("wave", 0.0)
    timeline.set_action("jump", 0.5)
    mid_fade = conditioning_features(timeline.sample(0.6))
    assert mid_fade.shape == (FEATURE_SIZE,) and mid_fade.dtype == np.float32
    wave, jump = ACTIONS.index("wave"), ACTIONS.index("jump")
    assert 0.0 < mid_fade[wave] < 1.0 and mid_fade[wave] + mid_fade[jump] == pytest.approx(1.0)
    assert mid_fade[: len(ACTIONS)].sum() == pytest.approx(1.0)


def test_random_clips_are_reproducible_and_varied() -> None:
    a, b = (
        next(random_clips(3, frames=4, fps=12, size=(32, 32))),
        next(random_clips(3, frames=4, fps=12, size=(32, 32))),
    )
    assert np.array_equal(a.frames, b.frames) and a.frames.shape == (4, 32, 32, 3)
    rng = random.Random(0)
    looks = {random_session(rng, frames=1, fps=12)[1].appearance.top for _ in range(5)}
    assert len(looks) == 5


def _directive_at_frame_4(kind: str, label: str) -> list[Conditioning]:
    timeline, conditioning = Timeline(), []
    for i in range(8):
        if i == 4:
            getattr(timeline, f"set_{kind}")(label, i / 12)
        conditioning.append(timeline.sample(i / 12))
    return conditioning


def test_directive_pixels_are_what_the_directive_changed() -> None:
    _, character = random_session(random.Random(4), frames=1, fps=12)
    face = directive_pixels(
        render_clip(_directive_at_frame_4("expression", "surprised"), character, (64, 64))
    )
    assert face.shape == (8, 64, 64)
    assert not face[:4].any()  # idle and neutral: nothing to show
    rows, cols = np.nonzero(face[-1])
    assert 20 < len(rows) < 200  # a face, not the body
    assert rows.max() < 32 and cols.min() > 16 and cols.max() < 48  # in the head
    wave = directive_pixels(
        render_clip(_directive_at_frame_4("action", "wave"), character, (64, 64))
    )
    assert not wave[:4].any()
    assert wave[-1].sum() > len(rows)  # an arm is more than a face


def test_directive_share_puts_a_new_directive_inside_clips() -> None:
    def changed(clip) -> bool:
        shown = [(c.action, c.expression) for c in clip.conditioning]
        return len(set(shown)) > 1

    def share_changed(directive_share: float) -> float:
        clips = random_clips(3, frames=6, fps=12, size=(16, 16), directive_share=directive_share)
        return sum(changed(clip) for clip in itertools.islice(clips, 40)) / 40

    assert share_changed(1.0) > 0.85  # unless the draw repeats what is already showing
    assert share_changed(0.0) < 0.5


def test_training_runs_saves_and_resumes(tmp_path) -> None:
    settings = TrainSettings(
        steps=2,
        batch=2,
        workers=0,
        clip_frames=4,
        rollout_after=0.0,
        rollout_share=1.0,
        detail_weight=2.0,
        directive_weight=5.0,
        directive_share=0.5,
        model=dict(TINY),
    )
    train(tmp_path, settings, device=torch.device("cpu"))
    assert (tmp_path / "diffusion_pytorch_model.safetensors").exists()
    first = TinyARTransformer.from_pretrained(tmp_path).state_dict()
    train(tmp_path, settings.model_copy(update={"steps": 3}), device=torch.device("cpu"))
    assert torch.load(tmp_path / "checkpoint.pt")["step"] == 3
    after = TinyARTransformer.from_pretrained(tmp_path).state_dict()
    assert any(not torch.equal(first[k], after[k]) for k in first)


def test_fine_tuning_can_train_only_the_conditioning_path(tmp_path) -> None:
    base = TrainSettings(
        steps=2, batch=2, workers=0, clip_frames=4, warmup=0, ema=0.0, model=dict(TINY)
    )
    train(tmp_path / "base", base, device=torch.device("cpu"))
    before = TinyARTransformer.from_pretrained(tmp_path / "base", torch_dtype=torch.float32)
    tuned = base.model_copy(update={"trainable": ["feature_embed"], "directive_weight": 5.0})
    train(tmp_path / "tuned", tuned, device=torch.device("cpu"), init=tmp_path / "base")
    after = torch.load(tmp_path / "tuned" / "checkpoint.pt")["model"]
    changed = {k for k, v in before.state_dict().items() if not torch.equal(v, after[k])}
    assert changed and all(k.startswith("feature_embed.") for k in changed), changed

    typo = base.model_copy(update={"trainable": ["feature_embd"]})
    with pytest.raises(ValueError, match="no parameter"):
        train(tmp_path / "typo", typo, device=torch.device("cpu"), init=tmp_path / "base")


def test_a_refiner_grows_from_trained_weights_changing_nothing_until_it_is_trained(
    tmp_path,
) -> None:
    base = TrainSettings(
        steps=2, batch=2, workers=0, clip_frames=4, warmup=0, ema=0.0, model=dict(TINY)
    )
    train(tmp_path / "base", base, device=torch.device("cpu"))
    trained = TinyARTransformer.from_pretrained(tmp_path / "base", torch_dtype=torch.float32)
    grown = TinyARTransformer(**TINY, refine_channels=4).eval()
    grown.load_state_dict(trained.state_dict(), strict=False)
    ref, ref_f, context, features, noisy = _inputs(1, 4)
    arguments = (
        ref,
        ref_f,
        context,
        torch.zeros(1, 4),
        features,
        noisy,
        torch.rand(1, 4),
        features,
    )
    with torch.no_grad():  # a refiner at its start (zero residual) changes nothing
        assert torch.equal(grown(*arguments), trained.eval()(*arguments))

    refine = base.model_copy(
        update={"trainable": ["refine"], "model": {**TINY, "refine_channels": 4}}
    )
    train(tmp_path / "refined", refine, device=torch.device("cpu"), init=tmp_path / "base")
    after = torch.load(tmp_path / "refined" / "checkpoint.pt")["model"]
    before = trained.state_dict()
    changed = {k for k, v in after.items() if k not in before or not torch.equal(v, before[k])}
    assert changed and all(k.startswith("refine.") for k in changed), changed


# -- the shipped weights ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pipeline():
    pipe = build_pipeline("tiny_ar", threads=0)
    yield pipe
    pipe.close()


def _idle_then(action: str, frames: int) -> list:
    timeline, out = Timeline(), []
    for i in range(frames):
        if i == 8:
            timeline.set_action(action, i / 12)  # type: ignore[arg-type]
        out.append(timeline.sample(i / 12))
    return out


def test_tiny_ar_is_registered_and_available_here() -> None:
    status = {s.name: s for s in list_pipelines()}["tiny_ar"]
    assert status.available, status.reason


def test_real_weights_stream_deterministic_frames(pipeline) -> None:
    character = Character(name="Mira")
    conditioning = _idle_then("wave", 8)
    pipeline.reset(character)
    first = [pipeline.step(conditioning[i : i + 2]) for i in range(0, 8, 2)]
    pipeline.reset(character)
    again = [pipeline.step(conditioning[i : i + 2]) for i in range(0, 8, 2)]
    spec = pipeline.spec
    assert first[0].shape == (2, spec.height, spec.width, 3) and first[0].dtype == np.uint8
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert first[-1].std() > 10  # a picture, not a flat colour


def test_real_weights_act_out_a_jump_and_keep_the_identity(pipeline) -> None:
    """Mid-jump, the model's frame is closer to the puppet's jump than to the puppet idling,
    and it stays closer to its own character than to another one."""
    model = pipeline.model
    size = (model.config.height, model.config.width)
    character = Character(name="A", seed=3)
    other = Character(
        name="B", appearance=random_session(random.Random(9), frames=1, fps=12)[1].appearance
    )
    conditioning = _idle_then("jump", 16)
    idle = _idle_then("idle", 16)
    pipeline.reset(character)
    frames = np.concatenate([pipeline.step(conditioning[i : i + 2]) for i in range(0, 16, 2)])
    generated = F.interpolate(to_unit(frames), size=size, mode="area")
    mid = 8 + 7  # about halfway through the 1.2 s jump

    def puppet(c, who: Character) -> torch.Tensor:
        return to_unit(render_frames([c], who, size)[0])

    error = lambda c, who: F.mse_loss(generated[mid], puppet(c, who)).item()  # noqa: E731
    assert error(conditioning[mid], character) < error(idle[mid], character)
    assert error(conditioning[mid], character) < error(conditioning[mid], other)


def test_config_defaults_point_at_the_shipped_weights() -> None:
    assert TinyARConfig().weights.endswith("assets/tiny_ar")


@pytest.mark.parametrize("seed", [0, 1])
def test_real_weights_show_a_directed_expression(pipeline, seed: int) -> None:
    """After `sad` is directed, the face is closer to the puppet's sad face than to the
    neutral one it had (expression guidance is what makes a few-pixel face read: without it
    this held for 1 of 4 seeds, with it for 4 of 4)."""
    model = pipeline.model
    size = (model.config.height, model.config.width)
    character = Character(name="A", seed=seed)
    timeline, sad, neutral = Timeline(), [], []
    for i in range(16):
        if i == 8:
            timeline.set_expression("sad", i / 12)
        sad.append(timeline.sample(i / 12))
        neutral.append(Timeline().sample(i / 12))
    pipeline.reset(character)
    frames = np.concatenate([pipeline.step(sad[i : i + 2]) for i in range(0, 16, 2)])
    generated = F.interpolate(to_unit(frames), size=size, mode="area")
    last = len(sad) - 1

    def error(c) -> float:  # type: ignore[no-untyped-def]
        truth = to_unit(render_frames([c], character, size)[0])
        return F.mse_loss(generated[last], truth).item()

    assert error(sad[last]) < error(neutral[last])


@pytest.mark.parametrize(("fps", "affordable"), [(60.0, False), (1.0, True)])
def test_guided_blocks_step_down_when_the_frame_rate_cannot_afford_them(
    fps: float, affordable: bool
) -> None:
    """A guided block must fit 95% of its screen time (2 frames at 60 fps: 32 ms, which these
    weights cannot do on a CPU; at 1 fps: 1.9 s). A stream that cannot afford it takes one
    denoising step fewer, then turns guidance off; the next stream starts afresh."""
    pipe = build_pipeline("tiny_ar", threads=0, fps=fps)
    timeline = Timeline()
    timeline.set_expression("sad", 0.0)
    conditioning = [timeline.sample(i / fps) for i in range(40)]
    pipe.reset(Character(name="A"))
    for i in range(0, 40, 2):
        pipe.step(conditioning[i : i + 2])
    assert (pipe.steps, pipe.expression_guidance > 0) == ((2, True) if affordable else (1, False))
    pipe.reset(Character(name="A"))
    assert (pipe.steps, pipe.expression_guidance) == (2, TinyARConfig().expression_guidance)
    pipe.close()


def test_guided_block_budget_goes_by_the_median_and_steps_down_one_rung_at_a_time(
    pipeline,
) -> None:
    """At 12 fps a 2-frame guided block may take 158 ms. The first six guided blocks of a stream
    (the server answering the chat message) and two slow ones among six change nothing; six
    slow ones drop a denoising step; six more turn guidance off."""
    pipeline.reset(Character(name="A"))

    def blocks(*seconds: float) -> tuple[int, float]:
        for s in seconds:
            pipeline._keep_guided_blocks_in_budget(s, 2)
        return pipeline.steps, pipeline.expression_guidance

    guidance = TinyARConfig().expression_guidance
    assert blocks(*[0.30] * 6) == (2, guidance)
    assert blocks(0.30, 0.25, 0.12, 0.12, 0.12, 0.12) == (2, guidance)
    assert blocks(*[0.17] * 5) == (2, guidance)
    assert blocks(0.17) == (1, guidance)
    assert blocks(*[0.17] * 6) == (1, 0.0)
    pipeline.reset(Character(name="A"))
    assert (pipeline.steps, pipeline.expression_guidance) == (2, guidance)
