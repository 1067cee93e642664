"""The registry and the `python -m pipelines` command line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pipelines.puppet import PuppetConfig
from pipelines.registry import (
    PipelineEntry,
    PipelineUnavailableError,
    UnknownPipelineError,
    build_pipeline,
    default_pipeline_name,
    list_pipelines,
    register,
)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipelines", *args], capture_output=True, text=True, timeout=120
    )


def test_puppet_is_listed_and_available() -> None:
    status = {s.name: s for s in list_pipelines()}
    assert status["puppet"].available and status["puppet"].reason == "ready"


def test_unavailable_pipelines_are_listed_with_a_reason_and_refuse_to_build() -> None:
    register(
        PipelineEntry(
            name="_test_gpu_only",
            description="test",
            target="nowhere:Nothing",
            config=PuppetConfig,
            unavailable_reason=lambda: "needs a unicorn",
        )
    )
    status = {s.name: s for s in list_pipelines()}["_test_gpu_only"]
    assert (status.available, status.reason) == (False, "needs a unicorn")
    with pytest.raises(PipelineUnavailableError, match="needs a unicorn"):
        build_pipeline("_test_gpu_only")


def test_build_validates_config_and_names() -> None:
    with pytest.raises(UnknownPipelineError, match="unknown pipeline 'nope'"):
        build_pipeline("nope")
    with pytest.raises(ValueError, match="bad config"):
        build_pipeline("puppet", width=-5)
    with pytest.raises(ValueError, match="bad config"):
        build_pipeline("puppet", colour="red")
    assert build_pipeline("puppet", width=64, height=48).spec.height == 48


def test_default_pipeline_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PERSONA_PIPELINE", raising=False)
    assert default_pipeline_name() == "puppet"
    monkeypatch.setenv("PERSONA_PIPELINE", "nope")
    with pytest.raises(UnknownPipelineError):
        default_pipeline_name()


def test_cli_list_prints_json() -> None:
    result = _cli("list")
    assert result.returncode == 0, result.stderr
    names = {p["name"]: p for p in json.loads(result.stdout)["pipelines"]}
    assert names["puppet"]["available"] is True


def test_cli_bench_prints_the_contract_fields() -> None:
    result = _cli("bench", "puppet", "--seconds", "0.5", "--width", "128", "--height", "96")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    for key in ("pipeline", "width", "height", "fps", "chunk_ms_p50", "chunk_ms_p95", "rss_mb"):
        assert key in figures
    assert (figures["width"], figures["height"]) == (128, 96)
    assert figures["fps"] > 0


@pytest.mark.parametrize(
    "args",
    [
        ("bench", "nope"),
        ("bench", "puppet", "--width", "-1"),
        ("bench", "puppet", "--seconds", "0"),
        ("frobnicate",),
    ],
)
def test_cli_bad_input_fails_clearly(args: tuple[str, ...]) -> None:
    result = _cli(*args)
    assert result.returncode != 0
    assert result.stdout == ""
    assert "error" in result.stderr
