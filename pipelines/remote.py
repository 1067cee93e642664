"""Pipelines on a Ray cluster, behind the same `Pipeline` interface as local ones.

With `PERSONA_RAY_ADDRESS` set (`auto` for the cluster this machine belongs to, joined with
`ray start`, or the head's `HOST:PORT`), `build_for_stream` gives each stream a pipeline of
its own in a Ray actor, placed by Ray on a node with the resources it declares (a GPU for
the pipelines that need CUDA, a CPU otherwise), so more visitors are served than one machine
holds. The actor builds the pipeline once, keeps its state (a KV cache) for the stream's
life, and answers each step with one chunk of uint8 frames; the stream runner cannot tell it
from a local pipeline. When the stream ends, the actor is kept warm a while for the next
stream of its pipeline (`_WarmActors`).

One actor per stream keeps a stream's state on one replica explicitly: a dead actor or node
(or one that stops answering) raises `RemotePipelineGone` on the next call, a clear end rather
than a silent reset, and `close` kills the actor. Actors are owned by the app's process, so Ray
removes them if the app dies too. A stream is refused at once (`ClusterFull`) when the
cluster has no room left for one more of its kind: the cluster's capacity is the app's
concurrency limit. Unset, nothing changes and Ray is never imported (it is an optional
requirement: `requirements-ray.txt`).
"""

from __future__ import annotations

import math
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipelines.base import Pipeline, PipelineGone, PipelineSpec
from pipelines.conditioning import Character, Conditioning
from pipelines.registry import PipelineStatus, build_pipeline, get_entry, list_pipelines

RAY_ADDRESS_ENV = "PERSONA_RAY_ADDRESS"
ACTOR_NAMESPACE = "persona"
ACTOR_PREFIX = "persona-stream-"
"""Names of stream actors start so (`ray.util.list_named_actors(all_namespaces=True)`)."""
CPUS_PER_STREAM = float(os.environ.get("PERSONA_RAY_CPUS_PER_STREAM", "1"))
"""CPUs a CPU pipeline's actor declares: Ray places no more streams on a node than it has."""
PLACE_SECONDS = float(os.environ.get("PERSONA_RAY_PLACE_SECONDS", "30"))
"""How long a new stream waits for Ray to place and start its actor (a place that looked free
was taken by another app process in the meantime, a node is starting) before it is refused."""
LOAD_SECONDS = float(os.environ.get("PERSONA_RAY_LOAD_SECONDS", "900"))
"""How long an actor may take to build its pipeline (a first download of a large model)."""
RELEASE_SECONDS = 1.0
"""A full cluster is looked at again for this long before a stream is refused: a place freed
by a closed actor shows in Ray's resource view 20-80 ms later (a restarting stream frees its
own place just before it asks again)."""
WARM_ACTORS = int(os.environ.get("PERSONA_RAY_WARM_ACTORS", "1"))
"""Actors of each pipeline this process keeps warm after their stream ends (`_WarmActors`)."""
WARM_SECONDS = float(os.environ.get("PERSONA_RAY_WARM_SECONDS", "120"))
"""How long a warm actor waits for a stream before it is killed, freeing its place."""
STEP_SECONDS = float(os.environ.get("PERSONA_RAY_STEP_SECONDS", "60"))
"""A step that takes longer than this (a hung node) ends the stream as gone."""
RESOURCE_NAMES = {"num_cpus": "CPU", "num_gpus": "GPU"}


class RemotePipelineGone(PipelineGone):
    """The stream's actor (or its node) died or stopped answering: its state is gone with it."""


class ClusterFull(PipelineGone):
    """The cluster has no room for one more stream of this pipeline."""


def ray_address() -> str | None:
    """Where pipelines run: a Ray address, or None for this process."""
    return os.environ.get(RAY_ADDRESS_ENV) or None


def build_for_stream(name: str) -> Pipeline:
    """A pipeline for one stream: in this process, or in its own actor on the Ray cluster."""
    address = ray_address()
    return build_pipeline(name) if address is None else RemotePipeline(name, address)


def stream_pipelines() -> list[PipelineStatus]:
    """The pipelines a stream can have: those that can run in this process, or, on a Ray
    cluster, those it has a node for (a GPU pipeline behind a CPU-only front door)."""
    address = ray_address()
    if address is None:
        return list_pipelines()
    connect(address)
    now = _resources_now()
    return [
        PipelineStatus(s.name, s.description, *_on_cluster(s.name, now)) for s in list_pipelines()
    ]


def stream_pipeline_availability(name: str) -> tuple[bool, str]:
    """(can a stream have pipeline `name`, why not): see `stream_pipelines`."""
    address = ray_address()
    if address is None:
        return get_entry(name).availability()
    connect(address)
    return _on_cluster(name)


def _on_cluster(name: str, resources: Resources | None = None) -> tuple[bool, str]:
    if places(name, resources)[0]:
        return True, "ready on the Ray cluster"
    need = ", ".join(f"{v:g} {RESOURCE_NAMES[k]}" for k, v in _resources(name).items())
    return False, f"the Ray cluster has no node with {need}"


_CONNECT_LOCK = threading.Lock()


def connect(address: str) -> None:
    """Join this process to the cluster at `address` (once, whichever thread asks first)."""
    import ray

    with _CONNECT_LOCK:
        if ray.is_initialized():  # (or a test joined this process to a cluster)
            return
        try:
            ray.init(address=address, log_to_driver=False, namespace=ACTOR_NAMESPACE)
        except ConnectionError as error:
            raise ConnectionError(
                f"no Ray cluster answers at {RAY_ADDRESS_ENV}={address} ({error}): start one"
                " with `ray start --head` (see the README), or unset it to run pipelines here"
            ) from None


class PipelineActor:
    """Runs in a Ray worker: one pipeline for one stream. It is built by `load`, not in the
    constructor, so that waiting for a place on the cluster and loading a model are told apart."""

    def __init__(self) -> None:
        self.pipeline: Pipeline | None = None

    def where(self) -> tuple[str, int]:
        """(the node it runs on, its worker process id)."""
        import ray

        return ray.get_runtime_context().get_node_id(), os.getpid()

    def load(self, name: str) -> PipelineSpec:
        self.pipeline = build_pipeline(name)
        return self.pipeline.spec

    def reset(self, character: Character) -> None:
        self.pipeline.reset(character)

    def step(self, conditioning: list[Conditioning]) -> np.ndarray:
        return self.pipeline.step(conditioning)


def _resources(name: str) -> dict[str, float]:
    """What one stream of pipeline `name` asks of a node."""
    gpus = get_entry(name).gpus_per_stream
    return {"num_gpus": gpus, "num_cpus": 1.0} if gpus else {"num_cpus": CPUS_PER_STREAM}


Resources = tuple[dict[str, float], dict[str, float]]
"""The cluster's resources: (in all, free now)."""


def _resources_now() -> Resources:
    import ray

    return ray.cluster_resources(), ray.available_resources()


def places(name: str, resources: Resources | None = None) -> tuple[int, int]:
    """(streams of pipeline `name` the cluster holds in all, places free for more now), from
    `resources` (read from the cluster when not given)."""
    total, free = resources or _resources_now()
    need = {RESOURCE_NAMES[k]: v for k, v in _resources(name).items() if v}

    def fits(resources: dict[str, float]) -> int:
        return min(math.floor(resources.get(k, 0.0) / v + 1e-9) for k, v in need.items())

    return fits(total), fits(free)


@dataclass
class _Actor:
    """One pipeline's actor on the cluster, as this process knows it."""

    handle: Any
    name: str
    """Its name on the cluster (ACTOR_PREFIX, the pipeline, an id)."""
    pipeline: str
    node_id: str = ""
    pid: int = 0
    spec: PipelineSpec | None = None


class _WarmActors:
    """Actors whose stream ended, kept with their model loaded for this process's next stream
    of the same pipeline (at most WARM_ACTORS of each, for WARM_SECONDS): that stream starts
    without a new worker or a model load (3 s for tiny_ar on 2 cores; wan compiles and warms
    up for ~20 s). They still hold their place, so another pipeline's stream that finds the
    cluster full has them evicted first."""

    def __init__(self) -> None:
        self._idle: dict[str, list[tuple[float, _Actor]]] = {}
        self._lock = threading.Lock()

    def put(self, actor: _Actor) -> bool:
        """Keep `actor` warm (False: enough are, the caller kills it)."""
        with self._lock:
            idle = self._idle.setdefault(actor.pipeline, [])
            if len(idle) >= WARM_ACTORS:
                return False
            idle.append((time.monotonic(), actor))
        expiry = threading.Timer(WARM_SECONDS + 0.05, self.expire)
        expiry.daemon = True
        expiry.start()
        return True

    def take(self, pipeline: str) -> _Actor | None:
        with self._lock:
            idle = self._idle.get(pipeline)
            return idle.pop()[1] if idle else None

    def expire(self) -> None:
        """Kill the actors idle for WARM_SECONDS: their places go back to the cluster."""
        now = time.monotonic()
        with self._lock:
            expired = [
                a for idle in self._idle.values() for t, a in idle if now - t >= WARM_SECONDS
            ]
            for pipeline, idle in self._idle.items():
                self._idle[pipeline] = [(t, a) for t, a in idle if now - t < WARM_SECONDS]
        _kill(expired)

    def evict(self) -> bool:
        """Kill every idle actor (a stream needs their places); whether there were any."""
        with self._lock:
            evicted = [a for idle in self._idle.values() for _, a in idle]
            self._idle.clear()
        _kill(evicted)
        return bool(evicted)

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {pipeline: len(idle) for pipeline, idle in self._idle.items() if idle}


def _kill(actors: list[_Actor]) -> None:
    import ray

    if not ray.is_initialized():  # this process left the cluster: its actors went with it
        return
    for actor in actors:
        ray.kill(actor.handle)


_WARM = _WarmActors()
_LIVE: set[RemotePipeline] = set()
_LIVE_LOCK = threading.Lock()


class RemotePipeline(Pipeline):
    """A pipeline in an actor of its own for the stream's life (a warm one when this process
    has one of the same pipeline); the same calls as a local one."""

    def __init__(self, name: str, address: str) -> None:
        connect(address)
        self.name = name
        self._actor: _Actor | None = self._warm_actor() or self._new_actor()
        self.actor_name, self.node_id, self.pid = (
            self._actor.name,
            self._actor.node_id,
            self._actor.pid,
        )
        self.spec = self._actor.spec
        with _LIVE_LOCK:
            _LIVE.add(self)

    def _warm_actor(self) -> _Actor | None:
        """A warm actor of this pipeline that still answers (one may have died idle)."""
        while (actor := _WARM.take(self.name)) is not None:
            self._actor = actor
            try:
                self._call("where", timeout=5.0)
                return actor
            except RemotePipelineGone:
                continue
        return None

    def _new_actor(self) -> _Actor:
        """A new actor, once the cluster has a place for it (else `ClusterFull` at once)."""
        import ray

        name = self.name
        total, free = places(name)
        deadline = time.monotonic() + RELEASE_SECONDS
        while total and free < 1 and time.monotonic() < deadline:
            if _WARM.evict():  # this process's idle actors give their places back
                deadline = time.monotonic() + RELEASE_SECONDS
            time.sleep(0.02)
            total, free = places(name)
        if not total:
            raise ClusterFull(_on_cluster(name)[1])
        if free < 1:
            raise ClusterFull(
                f"every place on the cluster for a {name} stream is taken ({total} of {total}"
                " in use); try again in a minute"
            )
        actor_name = f"{ACTOR_PREFIX}{name}-{uuid.uuid4().hex[:12]}"
        handle = (
            ray.remote(PipelineActor)
            .options(name=actor_name, max_restarts=0, **_resources(name))
            .remote()
        )
        self._actor = actor = _Actor(handle, actor_name, name)
        actor.node_id, actor.pid = self._call(
            "where",
            timeout=PLACE_SECONDS,
            late="found no place on the cluster",
            too_late=ClusterFull,
        )
        actor.spec = self._call("load", name, timeout=LOAD_SECONDS, late="did not load")
        return actor

    def reset(self, character: Character) -> None:
        self._call("reset", character)

    def step(self, conditioning: Sequence[Conditioning]) -> np.ndarray:
        self._check_conditioning(conditioning)
        return self._call("step", list(conditioning))

    def close(self) -> None:
        """The stream ended: its actor is kept warm for the next one, or killed."""
        actor = self._detach()
        if actor is not None and not _WARM.put(actor):
            _kill([actor])

    def _lose(self) -> None:
        """The actor failed: killed, never kept."""
        actor = self._detach()
        if actor is not None:
            _kill([actor])

    def _detach(self) -> _Actor | None:
        """This stream's actor, which it no longer uses (None if it had none)."""
        with _LIVE_LOCK:
            _LIVE.discard(self)
        actor, self._actor = self._actor, None
        return actor

    def _call(
        self,
        method: str,
        *args: object,
        timeout: float = STEP_SECONDS,
        late: str = "stopped answering",
        too_late: type[PipelineGone] = RemotePipelineGone,
    ):  # type: ignore[no-untyped-def]
        import ray
        from ray.exceptions import GetTimeoutError, NodeDiedError, RayActorError

        actor = self._actor
        if actor is None:
            raise RemotePipelineGone(f"the {self.name} pipeline was closed")
        try:
            return ray.get(getattr(actor.handle, method).remote(*args), timeout=timeout)
        except GetTimeoutError:
            self._lose()
            advice = "; try again in a minute" if too_late is ClusterFull else ""
            raise too_late(
                f"the {self.name} pipeline's Ray actor {late} within {timeout:g} s{advice}"
            ) from None
        except (RayActorError, NodeDiedError) as died:
            self._lose()
            raise RemotePipelineGone(
                f"the {self.name} pipeline's Ray worker is gone ({type(died).__name__})"
            ) from None
        except BaseException:
            if method in ("where", "load"):  # a stream that never started keeps nothing
                self._lose()
            raise


def stream_actors() -> list[str]:
    """Names of the stream actors alive on the cluster, of every app process (Ray's registry
    of named actors: a dead actor's name is gone)."""
    import ray

    return sorted(
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith(ACTOR_PREFIX)
    )


def cluster_report() -> dict:
    """The cluster for `/health`: its nodes (alive, address, resources, this app's streams on
    each), its resources in all and free, its places for each pipeline's streams, and the
    streams this app runs there."""
    import ray

    if not ray.is_initialized():
        return {"connected": False}
    with _LIVE_LOCK:
        streams = Counter(p.node_id for p in _LIVE)
    now = _resources_now()

    def rounded(resources: dict[str, float]) -> dict[str, float]:
        return {k: round(v, 2) for k, v in resources.items() if k in ("CPU", "GPU")}

    return {
        "connected": True,
        "nodes": [
            {
                "node_id": node["NodeID"],
                "address": node["NodeManagerAddress"],
                "alive": node["Alive"],
                "resources": rounded(node["Resources"]),
                "streams": streams.get(node["NodeID"], 0),
            }
            for node in ray.nodes()
        ],
        "resources": rounded(now[0]),
        "available": rounded(now[1]),
        "places": {  # streams of each pipeline the cluster holds in all, and free now
            s.name: dict(zip(("total", "free"), places(s.name, now), strict=True))
            for s in list_pipelines()
        },
        "streams": sum(streams.values()),
        "warm": _WARM.counts(),  # this app's actors kept loaded for its next streams
    }
