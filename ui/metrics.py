"""The Metrics panel: how the visitor's stream, the brain and the server are doing.

The visitor's media connection (ui/media.py) samples its session here once a second and pushes
the table and two plots to the page along with its frames, so nothing is polled. The figures:
the stream's fps, the pipeline's chunk time p50/p95, Enter -> the first frame handed out that
shows what the last message asked for, the backend's reply latency (asked -> first words), the
server's CPU and RSS (this process), GPU memory where a GPU is in use, and the streams running.
Knows the session's public attributes, nothing of gradio or WebRTC.
"""

from __future__ import annotations

import html
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import psutil

from ui.session import Session

PUSH_SECONDS = 1.0
HISTORY_SECONDS = 300.0
"""The charts show up to the last five minutes, and at least the last one."""
SHORTEST_CHART_SECONDS = 60.0
CHART_WIDTH, CHART_HEIGHT, CHART_LEFT = 360, 120, 34
CHART_COLOURS = ("#2a9d8f", "#e76f51", "#6d597a")
METRICS_WAITING = "Press **Start**: the figures come with the stream."


@dataclass(frozen=True)
class ServerLoad:
    cpu_percent: float
    """This process, summed over cores (200 = both of two cores busy)."""
    rss_mb: float
    gpu_mb: float | None
    """Memory held by torch's CUDA allocator; None without a GPU in use."""


class _ServerLoadReader:
    """Reads the process's load at most once a second, however many streams ask (psutil's CPU
    figure is the time used since the previous reading, so readings must not crowd)."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._process.cpu_percent()
        self._lock = threading.Lock()
        self._read_at = 0.0
        self._load = ServerLoad(0.0, 0.0, None)

    def read(self) -> ServerLoad:
        with self._lock:
            now = time.monotonic()
            if now - self._read_at >= PUSH_SECONDS:
                self._read_at = now
                self._load = ServerLoad(
                    self._process.cpu_percent(), self._process.memory_info().rss / 2**20, _gpu_mb()
                )
            return self._load


def _gpu_mb() -> float | None:
    torch = sys.modules.get("torch")  # never imported, nor CUDA started, just to say "none"
    if torch is None or not torch.cuda.is_initialized():
        return None
    return torch.cuda.memory_reserved() / 2**20


SERVER_LOAD = _ServerLoadReader()


@dataclass(frozen=True)
class Figures:
    """One sample of a stream's figures (times in milliseconds, None: not measured yet)."""

    fps: float
    chunk_p50_ms: float | None
    chunk_p95_ms: float | None
    reaction_ms: float | None
    reply_ms: float | None
    streams: int
    server: ServerLoad

    @classmethod
    def of(cls, session: Session, streams: int) -> Figures:
        runner = session.runner
        steps = runner.step_seconds() if runner is not None else []
        p50, p95 = np.percentile(steps, [50, 95]) * 1000 if steps else (None, None)
        return cls(
            fps=runner.fps() if runner is not None else 0.0,
            chunk_p50_ms=p50,
            chunk_p95_ms=p95,
            reaction_ms=_ms(session.reaction_seconds),
            reply_ms=_ms(session.reply_seconds),
            streams=streams,
            server=SERVER_LOAD.read(),
        )

    def table(self, pipeline: str, backend: str) -> str:
        """The figures as the panel's Markdown table."""
        server = self.server
        gpu = f" · GPU {server.gpu_mb:,.0f} MB" if server.gpu_mb is not None else " · no GPU"
        rows = [
            ("Stream", f"{self.fps:.1f} fps on {pipeline} · {self.streams} streaming here"),
            ("Chunk time", f"p50 {_shown(self.chunk_p50_ms)} · p95 {_shown(self.chunk_p95_ms)}"),
            ("Enter → changed frame", f"{_shown(self.reaction_ms)} (last message that acted)"),
            ("Reply", f"first words after {_shown(self.reply_ms)} ({backend})"),
            ("Server", f"CPU {server.cpu_percent:.0f}% · RSS {server.rss_mb:,.0f} MB{gpu}"),
        ]
        lines = ["| Figure | Now |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]
        return "\n".join(lines)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def _shown(ms: float | None) -> str:
    return "–" if ms is None else f"{ms:,.0f} ms"


class MetricsHistory:
    """A stream's figures over the last HISTORY_SECONDS, drawn as two small charts."""

    def __init__(self) -> None:
        self._samples: deque[tuple[float, Figures]] = deque()

    def add(self, now: float, figures: Figures) -> None:
        self._samples.append((now, figures))
        while now - self._samples[0][0] > HISTORY_SECONDS:
            self._samples.popleft()

    def fps_chart(self, now: float) -> str:
        return self._chart(now, "fps", {"fps": lambda f: f.fps})

    def latency_chart(self, now: float) -> str:
        return self._chart(
            now,
            "ms",
            {
                "chunk p95": lambda f: f.chunk_p95_ms,
                "Enter → frame": lambda f: f.reaction_ms,
                "reply": lambda f: f.reply_ms,
            },
        )

    def _chart(
        self, now: float, unit: str, series: dict[str, Callable[[Figures], float | None]]
    ) -> str:
        """An SVG line chart of `series` over the samples kept (drawn here: gradio 5.50's
        plots break the page when updated inside a closed accordion)."""
        lines = {
            name: [(t - now, v) for t, f in self._samples if (v := read(f)) is not None]
            for name, read in series.items()
        }
        top = max([v for points in lines.values() for _, v in points] + [1e-9]) * 1.1
        span = min(max(now - self._samples[0][0], SHORTEST_CHART_SECONDS), HISTORY_SECONDS)

        def point(ago: float, value: float) -> str:
            x = CHART_LEFT + (1 + ago / span) * (CHART_WIDTH - CHART_LEFT)
            y = CHART_HEIGHT - 16 - value / top * (CHART_HEIGHT - 28)
            return f"{x:.1f},{y:.1f}"

        parts = [
            f'<svg viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT}" width="100%" role="img" fill="currentColor" '
            f'aria-label="{html.escape(" and ".join(lines))} over the last minutes">',
            f'<text x="0" y="12" font-size="10">{top:,.0f} {unit}</text>',
            f'<text x="0" y="{CHART_HEIGHT - 16}" font-size="10">0</text>',
            f'<text x="{CHART_LEFT}" y="{CHART_HEIGHT - 2}" font-size="10">−{span / 60:.0f} min</text>',
            f'<text x="{CHART_WIDTH}" y="{CHART_HEIGHT - 2}" font-size="10" text-anchor="end">now</text>',
        ]
        for row, (name, points) in enumerate(lines.items()):
            colour = CHART_COLOURS[row]
            drawn = " ".join(point(ago, value) for ago, value in points)
            parts.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{drawn}"/>'
            )
            parts.append(
                f'<text x="{CHART_LEFT + 4 + 110 * row}" y="12" font-size="10" fill="{colour}">'
                f"{html.escape(name)}</text>"
            )
        return "".join(parts) + "</svg>"
