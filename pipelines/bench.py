"""Speed and memory of a pipeline, stepped through its own `step` as the app steps it.

Conditioning comes from the shared Timeline on a scripted tour of every action and expression,
so a benchmark exercises the same poses, blends and cache churn a chat session would. Prints
figures; asserts nothing about time.
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable, Iterator

from pipelines.conditioning import ACTIONS, EXPRESSIONS, Character, Conditioning, Timeline
from pipelines.registry import build_pipeline

TOUR_SECONDS_PER_CHANGE = 2.0


def tour(
    fps: float, *, seconds_per_change: float = TOUR_SECONDS_PER_CHANGE
) -> Iterator[Conditioning]:
    """Endless per-frame conditioning that changes action and expression every few seconds."""
    timeline = Timeline()
    frame = 0
    while True:
        t = frame / fps
        change, frames_per_change = divmod(frame, round(seconds_per_change * fps))
        if frames_per_change == 0:
            timeline.set_action(ACTIONS[change % len(ACTIONS)], t)
            timeline.set_expression(EXPRESSIONS[change % len(EXPRESSIONS)], t)
        yield timeline.sample(t, mouth_open=0.5 + 0.5 * ((frame // 3) % 2))
        frame += 1


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench(
    name: str,
    *,
    seconds: float = 10.0,
    clock: Callable[[], float] = time.perf_counter,
    **config: object,
) -> dict[str, object]:
    pipeline = build_pipeline(name, **config)
    spec = pipeline.spec
    conditioning = tour(spec.fps)
    try:
        first_start = clock()
        pipeline.reset(Character(name="Bench"))
        chunk_ms: list[float] = []
        frames, first_frame_ms = 0, None
        start = clock()
        while clock() - start < seconds or not chunk_ms:
            batch = [next(conditioning) for _ in range(spec.chunk_frames)]
            t0 = clock()
            out = pipeline.step(batch)
            chunk_ms.append((clock() - t0) * 1000)
            if first_frame_ms is None:
                first_frame_ms = (clock() - first_start) * 1000
            frames += len(out)
        elapsed = clock() - start
    finally:
        pipeline.close()
    ordered = sorted(chunk_ms)
    return {
        "pipeline": name,
        "width": spec.width,
        "height": spec.height,
        "chunk_frames": spec.chunk_frames,
        "chunks": len(chunk_ms),
        "fps": round(frames / elapsed, 1),
        "chunk_ms_p50": round(statistics.median(chunk_ms), 2),
        "chunk_ms_p95": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 2),
        "first_frame_ms": round(first_frame_ms or 0.0, 1),
        "rss_mb": round(_rss_mb(), 1),
        "device": spec.device,
    }
