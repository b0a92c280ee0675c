"""Latency statistics from in-page run times, in pytest-benchmark's names.

Pure numeric code: no browser, no pytest.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .results import Latency


def latency(times_ms: Sequence[float], *, session_create_ms: float | None, first_run_ms: float | None,
            session_cached: bool) -> Latency:
    """Summarise the timed runs; warm-up runs are never in `times_ms`."""
    times = np.asarray(times_ms, dtype=np.float64)
    if times.size == 0:
        figures = dict.fromkeys(("min", "max", "mean", "median", "p95", "stddev", "iqr"))
    else:
        q1, median, q3, p95 = np.percentile(times, [25, 50, 75, 95])
        figures = {
            "min": float(times.min()),
            "max": float(times.max()),
            "mean": float(times.mean()),
            "median": float(median),
            "p95": float(p95),
            "stddev": float(times.std(ddof=1)) if times.size > 1 else 0.0,
            "iqr": float(q3 - q1),
        }
    return Latency(
        session_create=session_create_ms,
        first_run=first_run_ms,
        session_cached=session_cached,
        rounds=int(times.size),
        times=tuple(float(t) for t in times),
        **figures,
    )
