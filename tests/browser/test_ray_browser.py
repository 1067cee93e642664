"""The real app with its pipelines on a real local Ray cluster, driven in headless Chromium."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.browser.harness import PersonaPage, chromium, health, ray_cluster, running_app

ray = pytest.importorskip("ray", reason="Ray is optional: pip install -r requirements-ray.txt")

from pipelines.remote import stream_actors  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A 2-CPU cluster: room for two puppet streams (one CPU each)."""
    with ray_cluster(cpus=2) as address:
        yield address


@pytest.fixture(scope="module")
def app(cluster: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """The app on the cluster; an actor whose stream ended is kept warm for 3 s."""
    with running_app(
        PERSONA_RAY_ADDRESS=cluster, RAY_AUTH_MODE="token", PERSONA_RAY_WARM_SECONDS="3"
    ) as running:
        yield running


@pytest.fixture(scope="module")
def operator(cluster: str) -> Iterator[None]:
    """This test process joined to the cluster, to look at it and kill actors as an operator
    (or a failing node) would (with token authentication: tests/conftest.py)."""
    ray.init(address=cluster, namespace="persona", log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with chromium() as b:
        yield b


def test_visitors_stream_on_actors_of_their_own_recover_from_a_killed_one_and_leave_none(
    browser: object, app: tuple[str, subprocess.Popen], cluster: str, operator: None
) -> None:
    url = app[0]
    first, second = PersonaPage(browser, url), PersonaPage(browser, url)
    try:
        for page in (first, second):
            page.start()
            page.wait_until_live()
        report = health(url)
        assert report["pipelines_on"] == f"ray {cluster}" and report["streaming"] == 2
        [node] = report["cluster"]["nodes"]
        assert node["alive"] and node["streams"] == 2
        assert report["cluster"]["places"]["puppet"] == {"total": 2, "free": 0}
        actors = stream_actors()
        assert len(actors) == 2  # one actor per visitor

        # A third visitor finds the cluster full: said over the video, the others play on.
        third = PersonaPage(browser, url)
        third.page.click("#start-btn")
        third.page.wait_for_function(
            "(document.querySelector('#persona-video #stream-busy p') || {}).textContent"
            "?.startsWith('No video worker is free')",
            timeout=20_000,
        )
        assert "2 of 2 in use" in third.over_video()
        third.close()

        # One visitor's actor dies mid-stream: that visitor is told, the other plays on.
        killed = time.monotonic()
        ray.kill(ray.get_actor(actors[0], namespace="persona"))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not any(
            p.over_video().startswith("The video worker stopped") for p in (first, second)
        ):
            time.sleep(0.1)
        told_after = time.monotonic() - killed
        [victim] = [p for p in (first, second) if p.over_video()]
        [other] = [p for p in (first, second) if p is not victim]
        assert "Ray worker is gone" in victim.over_video() and told_after < 5
        assert other.fps(2.0) >= 10

        # Try again lands the victim on a new actor.
        victim.page.click("#persona-video #stream-busy button")
        victim.page.wait_for_function(
            "window.__pcs.some(pc => pc.connectionState === 'connected')"
            " && !document.querySelector('#persona-video #stream-busy')",
            timeout=20_000,
        )
        victim.wait_until_live()
        assert victim.fps(3.0) >= 10 and other.fps(1.0) >= 10
        again = stream_actors()
        assert len(again) == 2 and actors[0] not in again and actors[1] in again
    finally:
        first.close()
        second.close()

    # Both leave: one actor is kept warm for a while, then nothing is left on the cluster.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and health(url)["cluster"]["streams"]:
        time.sleep(0.1)
    assert health(url)["cluster"]["warm"] == {"puppet": 1}
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and (
        stream_actors() or ray.available_resources().get("CPU", 0) < 2
    ):
        time.sleep(0.2)
    assert stream_actors() == [] and ray.available_resources().get("CPU", 0) == 2
    report = health(url)
    assert report["streaming"] == 0 and report["cluster"]["streams"] == 0


def test_an_app_that_dies_takes_its_actors_with_it(
    browser: object, cluster: str, operator: None
) -> None:
    with running_app(PERSONA_RAY_ADDRESS=cluster, RAY_AUTH_MODE="token") as (url, process):
        page = PersonaPage(browser, url)
        page.start()
        page.wait_until_live()
        assert len(stream_actors()) == 1
        process.kill()  # no goodbye: a crash, or the machine lost
        deadline = time.monotonic() + 15
        while stream_actors() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert stream_actors() == []
        page.close()
