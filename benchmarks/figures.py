"""Figures shared by the benchmark commands."""

from __future__ import annotations


def percentile(values: list[float], q: float) -> float | None:
    """The nearest-rank `q` quantile (0..1) of `values`, rounded to 0.1; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 1)
