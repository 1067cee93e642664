"""What running pipelines on a Ray cluster costs and gives, on local clusters started with
`ray start` (as the README says): prints one JSON object.

- `steps`: a chunk's step through a stream's actor against the same pipeline in this process
  (p50/p95 ms, puppet and tiny_ar; each actor declares the CPUs its local twin uses), the
  actor's worker memory (RSS) for each (what one stream costs the cluster), and how long a
  stream waits for a new actor and for a warm one.
- `workers`: three streams of tiny_ar asked of a cluster with one worker node (1 CPU), then of
  one with two: how many are served and refused, and the frames per second they make in all.
- `page`: the real app in Chromium, in-process and on a cluster: Enter -> first changed frame
  (p50), browser fps; then a stream's actor is killed: kill -> the reason over the video,
  and Try again -> the new actor's frames playing.

    python benchmarks/ray_cluster.py [--parts steps,workers,page] [--trials 6]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("RAY_AUTH_MODE", "token")  # before Ray starts a driver here

import psutil

from pipelines.conditioning import Character, Conditioning
from tests.browser.harness import (
    PersonaPage,
    chromium,
    ray_cluster,
    running_app,
)

ACTIONS = ["idle", "wave", "clap", "nod"]
MESSAGES = [("please wave", "wave"), ("clap your hands", "clap"), ("jump", "jump")]


def _ms(seconds: list[float], q: float) -> float:
    return round(statistics.quantiles(seconds, n=100)[round(q * 100) - 1] * 1000, 2)


def _chunks(spec_frames: int, count: int) -> list[list[Conditioning]]:
    """`count` chunks of a stream that changes action every 30 frames."""
    frame = 0
    chunks = []
    for _ in range(count):
        chunk = []
        for _ in range(spec_frames):
            action = ACTIONS[(frame // 30) % len(ACTIONS)]
            chunk.append(Conditioning(t=frame / 30, action=action, action_elapsed=frame % 30 / 30))
            frame += 1
        chunks.append(chunk)
    return chunks


def _step_times(pipeline, chunks: list[list[Conditioning]]) -> list[float]:  # type: ignore[no-untyped-def]
    pipeline.reset(Character(name="Bram"))
    pipeline.step(chunks[0])  # warm
    times = []
    for chunk in chunks[1:]:
        started = time.perf_counter()
        pipeline.step(chunk)
        times.append(time.perf_counter() - started)
    return times


def steps(steps_per_pipeline: int) -> dict:
    import ray
    import torch

    import pipelines.remote as remote
    from pipelines.registry import build_pipeline

    results = {}
    with ray_cluster(cpus=2) as address:
        ray.init(address=address, namespace=remote.ACTOR_NAMESPACE, log_to_driver=False)
        for name, cpus in (("puppet", 1), ("tiny_ar", torch.get_num_threads())):
            local = build_pipeline(name)
            chunks = _chunks(local.spec.chunk_frames, steps_per_pipeline + 1)
            local_times = _step_times(local, chunks)
            local.close()
            remote.CPUS_PER_STREAM = cpus  # the actor gets as many threads as this process
            started = time.perf_counter()
            actor = remote.RemotePipeline(name, address)
            cold_start = time.perf_counter() - started
            remote_times = _step_times(actor, chunks)
            rss = psutil.Process(actor.pid).memory_info().rss / 2**20
            actor.close()  # kept warm
            started = time.perf_counter()
            actor = remote.RemotePipeline(name, address)
            warm_start = time.perf_counter() - started
            actor.close()
            remote._WARM.evict()
            results[name] = {
                "chunk_frames": local.spec.chunk_frames,
                "cpus": cpus,
                "local_ms_p50": _ms(local_times, 0.5),
                "local_ms_p95": _ms(local_times, 0.95),
                "actor_ms_p50": _ms(remote_times, 0.5),
                "actor_ms_p95": _ms(remote_times, 0.95),
                "overhead_ms_p50": round(_ms(remote_times, 0.5) - _ms(local_times, 0.5), 2),
                "actor_rss_mb": round(rss, 1),
                "new_actor_s": round(cold_start, 3),
                "warm_actor_s": round(warm_start, 3),
            }
        ray.shutdown()
    return results


def _serve(address: str, streams: int, seconds: float) -> dict:
    """Ask for `streams` tiny_ar streams; step those that get a place as fast as they can."""
    import ray

    import pipelines.remote as remote

    ray.init(address=address, namespace=remote.ACTOR_NAMESPACE, log_to_driver=False)
    remote.CPUS_PER_STREAM = 1
    remote.WARM_ACTORS = 0  # each cluster is stopped after its run: keep nothing for later
    served, refused = [], 0
    for _ in range(streams):
        try:
            served.append(remote.RemotePipeline("tiny_ar", address))
        except remote.ClusterFull:
            refused += 1
    frames = [0] * len(served)

    def run(i: int) -> None:
        chunks = _chunks(served[i].spec.chunk_frames, 8)
        served[i].reset(Character(name="Bram"))
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            frames[i] += len(served[i].step(chunks[frames[i] // len(chunks[0]) % len(chunks)]))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(served))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    nodes = len({p.node_id for p in served})
    for pipeline in served:
        pipeline.close()
    ray.shutdown()
    return {
        "served": len(served),
        "refused": refused,
        "nodes_used": nodes,
        "fps_total": round(sum(frames) / seconds, 1),
        "fps_per_stream": [round(f / seconds, 1) for f in frames],
    }


def workers(seconds: float) -> dict:
    results = {}
    for count in (1, 2):
        with ray_cluster(cpus=0, worker_nodes=count, worker_cpus=1) as address:
            results[f"{count}_worker_nodes"] = _serve(address, streams=3, seconds=seconds)
    return results


def _enter_to_frame(page: PersonaPage, trials: int) -> tuple[list[float], float]:
    page.start()
    page.wait_until_live()
    fps = page.fps(4.0)
    changed = []
    for i in range(trials):
        text, action = MESSAGES[i % len(MESSAGES)]
        page.page.wait_for_timeout(2500)
        timing = page.send(text, f"action: {action}")
        if timing["changed_frame_ms"] is not None:
            changed.append(timing["changed_frame_ms"])
    return changed, fps


def page(trials: int) -> dict:
    import ray

    from pipelines.remote import stream_actors

    results = {}
    with chromium() as browser:
        with running_app() as (url, _):
            visitor = PersonaPage(browser, url)
            changed, fps = _enter_to_frame(visitor, trials)
            results["in_process"] = {
                "enter_to_changed_frame_ms_p50": round(statistics.median(changed), 1),
                "changed_in": f"{len(changed)}/{trials}",
                "browser_fps": round(fps, 1),
            }
            visitor.close()
        with ray_cluster(cpus=2) as address, running_app(PERSONA_RAY_ADDRESS=address) as (url, _):
            visitor = PersonaPage(browser, url)
            changed, fps = _enter_to_frame(visitor, trials)
            ray.init(address=address, namespace="persona", log_to_driver=False)
            [name] = stream_actors()
            killed = time.monotonic()
            ray.kill(ray.get_actor(name))
            while not visitor.over_video().startswith("The video worker stopped"):
                time.sleep(0.02)
            told = time.monotonic() - killed
            visitor.page.screenshot(path=str(Path(os.environ.get("OUT", "/tmp")) / "ray-gone.png"))
            clicked = time.monotonic()
            visitor.page.click("#persona-video #stream-busy button")
            visitor.wait_until_live()
            back = time.monotonic() - clicked
            results["ray"] = {
                "enter_to_changed_frame_ms_p50": round(statistics.median(changed), 1),
                "changed_in": f"{len(changed)}/{trials}",
                "browser_fps": round(fps, 1),
                "kill_to_reason_over_video_s": round(told, 2),
                "try_again_to_live_s": round(back, 2),
                "fps_after_recovery": round(visitor.fps(3.0), 1),
            }
            visitor.close()
            ray.shutdown()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--parts", default="steps,workers,page")
    parser.add_argument("--steps", type=int, default=100, help="chunks timed per pipeline")
    parser.add_argument("--seconds", type=float, default=10.0, help="of each workers run")
    parser.add_argument("--trials", type=int, default=6, help="messages per page run")
    args = parser.parse_args()
    parts = args.parts.split(",")
    result = {}
    if "steps" in parts:
        result["steps"] = steps(args.steps)
    if "workers" in parts:
        result["workers"] = workers(args.seconds)
    if "page" in parts:
        result["page"] = page(args.trials)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
