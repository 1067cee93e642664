"""Pipelines on a real local Ray cluster (started in this process), behind `Pipeline`."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is optional: pip install -r requirements-ray.txt")

from pipelines.conditioning import Character, Conditioning  # noqa: E402
from pipelines.registry import build_pipeline  # noqa: E402
from pipelines.remote import (  # noqa: E402
    RAY_ADDRESS_ENV,
    RemotePipeline,
    RemotePipelineGone,
    build_for_stream,
)


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, namespace="persona")
    yield
    ray.shutdown()


def _cpus_held(wait_s: float = 5.0) -> float:
    """CPUs the cluster's actors hold (each stream's actor declares one), once kills settle."""
    deadline = time.monotonic() + wait_s
    while True:
        held = ray.cluster_resources()["CPU"] - ray.available_resources().get("CPU", 0.0)
        if held == 0 or time.monotonic() > deadline:
            return held
        time.sleep(0.1)


def test_without_an_address_pipelines_are_local(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(RAY_ADDRESS_ENV, raising=False)
    assert not isinstance(build_for_stream("puppet"), RemotePipeline)


def test_a_remote_pipeline_draws_what_a_local_one_draws_and_leaves_no_actor(cluster: None) -> None:
    remote, local = RemotePipeline("puppet", "auto"), build_pipeline("puppet")
    assert remote.spec == local.spec
    assert _cpus_held(wait_s=0) == 1  # one stream, one actor
    character = Character(name="Bram")
    remote.reset(character)
    local.reset(character)
    for i in range(3):
        chunk = [Conditioning(t=i / 30, action="wave", action_elapsed=i / 30)]
        frames = remote.step(chunk)
        assert frames.dtype == np.uint8 and np.array_equal(frames, local.step(chunk))
    remote.close()
    remote.close()  # twice is safe
    assert _cpus_held() == 0


def test_a_killed_actor_ends_the_stream_with_a_clear_error(cluster: None) -> None:
    remote = RemotePipeline("puppet", "auto")
    remote.reset(Character(name="Juno"))
    ray.kill(remote._actor)
    with pytest.raises(RemotePipelineGone, match="puppet pipeline's Ray actor is gone"):
        remote.step([Conditioning()])
    remote.close()
    again = RemotePipeline("puppet", "auto")  # the next stream lands on a healthy actor
    again.reset(Character(name="Juno"))
    assert again.step([Conditioning()]).shape[0] == 1
    again.close()
    assert _cpus_held() == 0
