"""Pipelines on a real local Ray cluster (started in this process), behind `Pipeline`."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is optional: pip install -r requirements-ray.txt")

from fastrtc import CloseStream  # noqa: E402

import pipelines.remote as remote_module  # noqa: E402
from pipelines.conditioning import Character, Conditioning  # noqa: E402
from pipelines.registry import build_pipeline  # noqa: E402
from pipelines.remote import (  # noqa: E402
    RAY_ADDRESS_ENV,
    ClusterFull,
    RemotePipeline,
    RemotePipelineGone,
    build_for_stream,
    cluster_report,
    stream_actors,
    stream_pipelines,
)
from ui.session import Session  # noqa: E402


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    ray.init(
        address="local",  # a new cluster of its own, whatever `ray start` ran before
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        namespace="persona",
    )
    yield
    ray.shutdown()


@pytest.fixture
def on_cluster(cluster: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The app's setting that sends streams to the cluster this process joined."""
    monkeypatch.setenv(RAY_ADDRESS_ENV, "auto")
    monkeypatch.setattr(remote_module, "WARM_ACTORS", 0)  # (the warm tests keep some)
    yield
    remote_module._WARM.evict()
    assert _stream_actors() == []  # every test leaves nothing behind


def _stream_actors(wait_s: float = 5.0) -> list[str]:
    """The stream actors alive on the cluster, once kills have settled."""
    deadline = time.monotonic() + wait_s
    while (names := stream_actors()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return names


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


def test_a_remote_pipeline_draws_what_a_local_one_draws_and_leaves_no_actor(
    on_cluster: None,
) -> None:
    remote, local = build_for_stream("puppet"), build_pipeline("puppet")
    assert isinstance(remote, RemotePipeline) and remote.spec == local.spec
    assert _cpus_held(wait_s=0) == 1  # one stream, one actor
    assert _stream_actors(wait_s=0) == [remote.actor_name]
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


def test_a_killed_actor_ends_the_stream_with_a_clear_error(on_cluster: None) -> None:
    remote = RemotePipeline("puppet", "auto")
    remote.reset(Character(name="Juno"))
    ray.kill(remote._actor.handle)
    with pytest.raises(RemotePipelineGone, match="puppet pipeline's Ray worker is gone"):
        remote.step([Conditioning()])
    again = RemotePipeline("puppet", "auto")  # the next stream lands on a healthy actor
    again.reset(Character(name="Juno"))
    assert again.step([Conditioning()]).shape[0] == 1
    again.close()
    assert _cpus_held() == 0


def test_a_full_cluster_refuses_a_stream_at_once_saying_how_full(on_cluster: None) -> None:
    streams = [RemotePipeline("puppet", "auto") for _ in range(2)]  # 2 CPUs, 1 each
    try:
        report = cluster_report()
        assert report["places"]["puppet"] == {"total": 2, "free": 0}
        [node] = report["nodes"]
        assert node["alive"] and node["streams"] == report["streams"] == 2
        started = time.monotonic()
        with pytest.raises(ClusterFull, match=r"puppet stream is taken \(2 of 2 in use\)"):
            RemotePipeline("puppet", "auto")
        assert time.monotonic() - started < 3  # told at once, not after a long wait
    finally:
        for stream in streams:
            stream.close()
    assert cluster_report()["streams"] == 0


def test_a_pipeline_the_cluster_has_no_node_for_is_unavailable(on_cluster: None) -> None:
    """wan declares a GPU per stream; this cluster has none (on a GPU cluster the same
    front door, without a GPU of its own, offers it)."""
    wan = {s.name: s for s in stream_pipelines()}["wan"]
    assert not wan.available and wan.reason == "the Ray cluster has no node with 1 GPU, 1 CPU"
    with pytest.raises(ClusterFull, match="no node with 1 GPU"):
        RemotePipeline("wan", "auto")


def test_a_stream_that_finds_no_place_in_time_is_refused_and_leaves_no_actor(
    on_cluster: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another app process took the last place between the look and the ask."""
    streams = [RemotePipeline("puppet", "auto") for _ in range(2)]
    try:
        monkeypatch.setattr(remote_module, "places", lambda name: (2, 1))  # looked free
        monkeypatch.setattr(remote_module, "PLACE_SECONDS", 1.0)
        with pytest.raises(ClusterFull, match="found no place on the cluster within 1 s"):
            RemotePipeline("puppet", "auto")
        assert len(_stream_actors(wait_s=0)) == 2
    finally:
        for stream in streams:
            stream.close()


def test_a_stream_starts_on_a_warm_actor_of_its_pipeline_which_expires(
    on_cluster: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(remote_module, "WARM_ACTORS", 1)
    monkeypatch.setattr(remote_module, "WARM_SECONDS", 1.5)
    first = RemotePipeline("puppet", "auto")
    first.reset(Character(name="Bram"))
    first.step([Conditioning(action="wave", action_elapsed=0.5)])
    first.close()
    assert cluster_report()["warm"] == {"puppet": 1} and cluster_report()["streams"] == 0
    started = time.monotonic()
    second = RemotePipeline("puppet", "auto")  # the same actor, its model loaded
    assert second.actor_name == first.actor_name and time.monotonic() - started < 0.5
    fresh = build_pipeline("puppet")
    for pipeline in (second, fresh):  # reset: no trace of the last stream
        pipeline.reset(Character(name="Juno"))
    chunk = [Conditioning()]
    assert np.array_equal(second.step(chunk), fresh.step(chunk))
    second.close()
    assert _stream_actors(wait_s=0) == [first.actor_name]
    time.sleep(1.6)  # unused for WARM_SECONDS: killed, its place given back
    assert _stream_actors() == [] and _cpus_held() == 0


def test_warm_actors_that_died_or_hold_the_last_place_do_not_block_a_stream(
    on_cluster: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(remote_module, "WARM_ACTORS", 2)
    warm = [RemotePipeline("puppet", "auto") for _ in range(2)]
    for pipeline in warm:
        pipeline.close()  # both kept warm: the cluster's 2 CPUs are held
    ray.kill(ray.get_actor(warm[1].actor_name))  # one dies while idle
    deadline = time.monotonic() + 5  # (a kill takes effect a little later)
    while warm[1].actor_name in stream_actors() and time.monotonic() < deadline:
        time.sleep(0.05)
    streams = [RemotePipeline("puppet", "auto")]  # skips the dead one, takes the other
    try:
        assert streams[0].actor_name == warm[0].actor_name
        extra = RemotePipeline("puppet", "auto")  # a new actor where the dead one was
        extra.close()  # kept warm: the cluster is full, one place held by a warm actor
        assert cluster_report()["warm"] == {"puppet": 1}
        streams.append(RemotePipeline("tiny_ar", "auto"))  # the warm puppet gives its place
        assert cluster_report()["warm"] == {}
    finally:
        for stream in streams:
            stream.close()


def _play(frames, until=lambda: False, seconds: float = 10) -> CloseStream | None:  # type: ignore[no-untyped-def]
    """Take a session's frames at 30 fps until `until()` holds or the stream ends (its
    CloseStream is returned)."""
    deadline = time.monotonic() + seconds
    while not until() and time.monotonic() < deadline:
        item = next(frames)
        if isinstance(item, CloseStream):
            return item
        time.sleep(1 / 30)
    return None


def test_a_session_whose_worker_dies_ends_its_stream_and_starts_again(on_cluster: None) -> None:
    session = Session("puppet", "offline")

    def live() -> bool:
        return session.runner is not None and session.runner.showing is not None

    try:
        frames = session.frames()
        assert _play(frames, live) is None and live()
        ray.kill(session.runner.pipeline._actor.handle)
        end = _play(frames)
        assert end is not None and end.msg.startswith("The video worker stopped: the puppet")
        assert "Press Start" in end.msg and not session.streaming
        frames = session.frames()  # Start again: a new actor
        assert _play(frames, live) is None and live()
        frames.close()
    finally:
        session.close()


def test_a_session_that_finds_the_cluster_full_is_told_so(on_cluster: None) -> None:
    streams = [RemotePipeline("puppet", "auto") for _ in range(2)]
    session = Session("puppet", "offline")
    try:
        end = _play(session.frames())
        assert end is not None
        assert end.msg.startswith("No video worker is free: every place on the cluster")
        assert not session.streaming
    finally:
        session.close()
        for stream in streams:
            stream.close()
