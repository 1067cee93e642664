"""Pipelines on a Ray cluster, behind the same `Pipeline` interface as local ones.

With `PERSONA_RAY_ADDRESS` set (`auto` for the cluster this machine belongs to, started with
`ray start`; `ray://head:10001` for a remote head), `build_for_stream`
gives each stream a pipeline of its own in a Ray actor, placed by Ray on a node with the
resources it declares (a GPU for the pipelines that need CUDA, a CPU otherwise), so more
visitors are served than one machine holds. The actor builds the pipeline once, keeps its state
(a KV cache) for the stream's life, and answers each step with one chunk of uint8 frames; the
stream runner cannot tell it from a local pipeline. One actor per stream keeps a stream's state
on one replica explicitly: a dead actor or node raises `RemotePipelineGone` on the next call, a
clear end rather than a silent reset, and `close` kills the actor so none is left behind.
Unset, nothing changes and Ray is never imported (it is an optional requirement:
`requirements-ray.txt`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence

import numpy as np

from pipelines.base import Pipeline, PipelineGone, PipelineSpec
from pipelines.conditioning import Character, Conditioning
from pipelines.registry import build_pipeline, get_entry

RAY_ADDRESS_ENV = "PERSONA_RAY_ADDRESS"
ACTOR_NAMESPACE = "persona"
CPUS_PER_STREAM = float(os.environ.get("PERSONA_RAY_CPUS_PER_STREAM", "1"))
"""CPUs a CPU pipeline's actor declares: Ray places no more streams on a node than it has."""


class RemotePipelineGone(PipelineGone):
    """The stream's actor (or its node) died: its state is gone with it."""


def ray_address() -> str | None:
    """Where pipelines run: a Ray address, or None for this process."""
    return os.environ.get(RAY_ADDRESS_ENV) or None


def build_for_stream(name: str) -> Pipeline:
    """A pipeline for one stream: in this process, or in its own actor on the Ray cluster."""
    address = ray_address()
    return build_pipeline(name) if address is None else RemotePipeline(name, address)


@functools.cache
def _connect(address: str) -> None:
    import ray

    if not ray.is_initialized():  # (a test may have joined this process to a cluster)
        ray.init(address=address, log_to_driver=False, namespace=ACTOR_NAMESPACE)


class PipelineActor:
    """Runs in a Ray worker: one pipeline for one stream."""

    def __init__(self, name: str) -> None:
        self.pipeline = build_pipeline(name)

    def spec(self) -> PipelineSpec:
        return self.pipeline.spec

    def reset(self, character: Character) -> None:
        self.pipeline.reset(character)

    def step(self, conditioning: list[Conditioning]) -> np.ndarray:
        return self.pipeline.step(conditioning)


def _resources(name: str) -> dict[str, float]:
    """What one stream of pipeline `name` asks of a node."""
    gpus = get_entry(name).gpus_per_stream
    return {"num_gpus": gpus, "num_cpus": 1.0} if gpus else {"num_cpus": CPUS_PER_STREAM}


class RemotePipeline(Pipeline):
    """A pipeline in its own Ray actor; the same calls as a local one."""

    def __init__(self, name: str, address: str) -> None:
        import ray

        _connect(address)
        self.name = name
        self._actor = ray.remote(**_resources(name))(PipelineActor).remote(name)
        self.spec = self._call("spec")

    def reset(self, character: Character) -> None:
        self._call("reset", character)

    def step(self, conditioning: Sequence[Conditioning]) -> np.ndarray:
        self._check_conditioning(conditioning)
        return self._call("step", list(conditioning))

    def close(self) -> None:
        import ray

        actor, self._actor = self._actor, None
        if actor is not None:
            ray.kill(actor)

    def _call(self, method: str, *args: object):  # type: ignore[no-untyped-def]
        import ray
        from ray.exceptions import RayActorError

        if self._actor is None:
            raise RemotePipelineGone(f"the {self.name} pipeline was closed")
        try:
            return ray.get(getattr(self._actor, method).remote(*args))
        except RayActorError as error:
            raise RemotePipelineGone(
                f"the {self.name} pipeline's Ray actor is gone ({type(error).__name__})"
            ) from None
