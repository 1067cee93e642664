"""`benchmarks/wan_reference.py --tiny` against a reference checkout, when one is given.

The reference code is never part of this repository: set WAN_REFERENCE to a checkout of
guandeh17/Self-Forcing (or NVlabs/LongLive at its Wan2.1 version, commit 7b56712) to run this;
it also needs `einops`, which the reference imports. Float32 on CPU: the same random weights
and inputs through both models must agree to float32 rounding (the sinusoid included, which
this model computes in float64 as Wan does), block after block through the KV cache.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
from pathlib import Path

import pytest

REFERENCE = os.environ.get("WAN_REFERENCE")
SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "wan_reference.py"
PARITY = 1e-5
"""Relative difference allowed in float32 (observed ~1e-7)."""

pytestmark = pytest.mark.skipif(not REFERENCE, reason="set WAN_REFERENCE to a reference checkout")


def test_tiny_side_by_side_matches_the_reference(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("einops")
    argv = [str(SCRIPT), "--reference", str(REFERENCE), "--tiny", "--device", "cpu"]
    monkeypatch.setattr(sys, "argv", [*argv, "--blocks", "5", "--repeats", "1"])
    runpy.run_path(str(SCRIPT), run_name="__main__")
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["cache"] for row in rows] == ["global", "longlive"]
    for row in rows:
        assert row["first_pass_relative_difference"] < PARITY
        assert row["last_x0_relative_difference"] < PARITY
        for model in ("reference", "ours"):
            assert len(row[model]["block_ms"]) == row["blocks"]
    assert rows[1]["sink_frames"] == 3 and rows[1]["window_frames"] == 9
