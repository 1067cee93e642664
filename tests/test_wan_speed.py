"""`benchmarks/wan_speed.py --tiny` runs WanPipeline end to end on CPU and prints its JSON line.

Run in-process (runpy, as `__main__`) so it shares the torch/diffusers imports of the other wan
tests: the full-size run is the same code with other configs, so this keeps it from rotting.
"""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "wan_speed.py"
KEYS = {
    "device",
    "params",
    "size",
    "decoder",
    "blocks",
    "latent_frames_per_block",
    "video_frames_per_block",
    "steps",
    "sink_frames",
    "window_frames",
    "fps_median",
    "block_ms_p50",
    "block_ms_p95",
    "time_to_first_frame_s",
    "build_s",
    "prompt_switch_block_ms",
    "prompt_switch_extra_ms",
    "compile",
    "attention",
    "peak_memory_gb",
}


def _bench(monkeypatch, capsys, *flags: str) -> dict[str, object]:  # type: ignore[no-untyped-def]
    argv = [str(SCRIPT), "--tiny", "--blocks", "2", "--device", "cpu", *flags]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(SCRIPT), run_name="__main__")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    return json.loads(lines[0])


@pytest.mark.parametrize(("flags", "decoder"), [((), "wan_vae"), (("--tiny-decoder",), "tiny")])
def test_tiny_run_prints_one_json_line(monkeypatch, capsys, flags, decoder) -> None:  # type: ignore[no-untyped-def]
    result = _bench(monkeypatch, capsys, *flags)
    assert set(result) == KEYS
    assert result["device"] == "cpu" and result["peak_memory_gb"] is None
    assert result["decoder"] == decoder and result["size"] == "64x32"
    assert result["video_frames_per_block"] == 12 and result["steps"] == 4
    assert isinstance(result["params"], int) and result["params"] > 0
    assert 0 < result["block_ms_p50"] <= result["block_ms_p95"]  # type: ignore[operator]
    assert result["fps_median"] > 0 and result["time_to_first_frame_s"] > 0  # type: ignore[operator]
    assert result["prompt_switch_block_ms"] > 0 and result["compile"] is False  # type: ignore[operator]


def test_one_block_is_refused(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), "--tiny", "--blocks", "1"])
    with pytest.raises(SystemExit):
        runpy.run_path(str(SCRIPT), run_name="__main__")
    assert "--blocks must be >= 2" in capsys.readouterr().err
