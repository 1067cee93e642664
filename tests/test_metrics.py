"""The Live metrics panel's figures, measured on a real session streaming the puppet."""

from __future__ import annotations

import re
import time

import pytest

from ui.metrics import HISTORY_SECONDS, Figures, MetricsHistory, ServerLoad
from ui.session import Session


def _figures(fps: float, chunk_p95_ms: float | None = None) -> Figures:
    return Figures(fps, None, chunk_p95_ms, None, None, 1, ServerLoad(10.0, 800.0, None))


def _polylines(svg: str) -> list[list[tuple[float, float]]]:
    return [
        [tuple(map(float, p.split(","))) for p in points.split()]
        for points in re.findall(r'<polyline[^>]*points="([^"]*)"', svg)
    ]


def test_a_session_measures_enter_to_changed_frame_and_the_reply() -> None:
    session = Session("puppet", "offline")
    frames = session.frames()
    try:
        deadline = time.monotonic() + 10
        while (session.runner is None or session.runner.showing is None) and (
            time.monotonic() < deadline
        ):
            next(frames)
            time.sleep(1 / 30)
        assert session.reaction_seconds is None and session.reply_seconds is None
        session.send("please wave")
        while session.reaction_seconds is None and time.monotonic() < deadline:
            next(frames)
            time.sleep(1 / 30)
        list(session.follow())
        figures = Figures.of(session, streams=1)
    finally:
        session.close()
    assert figures.reaction_ms is not None and 0 < figures.reaction_ms < 2000
    assert figures.reply_ms is not None and figures.reply_ms > 0
    assert figures.chunk_p50_ms is not None and figures.chunk_p95_ms >= figures.chunk_p50_ms
    assert figures.server.rss_mb > 100
    table = figures.table("puppet", "offline")
    assert re.search(r"Enter → changed frame \| \d+ ms", table)
    assert re.search(r"Server \| CPU \d+% · RSS [\d,]+ MB · no GPU", table)


def test_a_figure_not_measured_yet_shows_a_dash() -> None:
    table = _figures(29.7).table("puppet", "embedded")
    assert "29.7 fps on puppet · 1 streaming here" in table
    assert "| Chunk time | p50 – · p95 – |" in table


def test_the_charts_draw_each_series_over_the_samples_kept() -> None:
    history = MetricsHistory()
    for second in range(400):
        history.add(float(second), _figures(30.0 if second < 390 else 10.0, 5.0))
    (fps_line,) = _polylines(history.fps_chart(399.0))
    assert len(fps_line) == HISTORY_SECONDS + 1  # the first 99 s have been dropped
    ys = [y for _, y in fps_line]
    assert ys[-1] > ys[0]  # the fps fell at the end: the line goes down the chart (SVG y grows)
    assert [x for x, _ in fps_line] == sorted(x for x, _ in fps_line)
    latency_lines = _polylines(history.latency_chart(399.0))
    assert [len(line) for line in latency_lines] == [HISTORY_SECONDS + 1, 0, 0]


@pytest.mark.parametrize("seconds, label", [(5, "−1 min"), (150, "−2 min"), (400, "−5 min")])
def test_a_chart_spans_what_it_has_seen_from_one_to_five_minutes(seconds: int, label: str) -> None:
    history = MetricsHistory()
    for second in range(seconds + 1):
        history.add(float(second), _figures(30.0))
    assert label in history.fps_chart(float(seconds))
