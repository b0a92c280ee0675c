"""Latency statistics from in-page run times, in pytest-benchmark's names.

Pure numeric code: no browser, no pytest. Plain Python, not numpy: a test times
a handful of runs, where numpy's per-call cost (~0.4 ms) exceeded the work.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from ..results import Latency


def latency(times_ms: Sequence[float], *, session_create_ms: float | None, first_run_ms: float | None,
            session_cached: bool) -> Latency:
    """Summarise the timed runs; warm-up runs are never in `times_ms`."""
    times = tuple(float(t) for t in times_ms)
    if not times:
        figures = dict.fromkeys(("min", "max", "mean", "median", "p95", "stddev", "iqr"))
    else:
        ordered = sorted(times)
        figures = {
            "min": ordered[0],
            "max": ordered[-1],
            "mean": statistics.fmean(ordered),
            "median": percentile(ordered, 50),
            "p95": percentile(ordered, 95),
            "stddev": statistics.stdev(ordered) if len(ordered) > 1 else 0.0,
            "iqr": percentile(ordered, 75) - percentile(ordered, 25),
        }
    return Latency(
        session_create=session_create_ms,
        first_run=first_run_ms,
        session_cached=session_cached,
        rounds=len(times),
        times=times,
        **figures,
    )


def percentile(ordered: Sequence[float], q: float) -> float:
    """The q-th percentile of sorted values, interpolated linearly between neighbours (numpy's default)."""
    position = (len(ordered) - 1) * q / 100
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)
