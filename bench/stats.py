"""Summaries shared by every figure: median/min/max over runs, and latency percentiles."""
from __future__ import annotations

import math
import statistics
from typing import Iterable


def percentile(values: Iterable[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of ``values``; NaN when there are none."""
    data = sorted(values)
    if not data:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(data)))
    return data[rank - 1]


def summary(values: Iterable[float], digits: int = 4) -> dict:
    """``{median, min, max, runs}`` of ``values`` (each run's figure)."""
    data = list(values)
    if not data:
        return {"median": None, "min": None, "max": None, "runs": 0}
    return {"median": round(statistics.median(data), digits), "min": round(min(data), digits),
            "max": round(max(data), digits), "runs": len(data)}


def latency_ms(seconds: Iterable[float]) -> dict:
    """p50/p99/max of per-operation latencies given in seconds, in milliseconds."""
    data = list(seconds)
    return {"p50_ms": round(percentile(data, 50) * 1000, 3), "p99_ms": round(percentile(data, 99) * 1000, 3),
            "max_ms": round(max(data) * 1000, 3) if data else None, "samples": len(data)}


def ratio(a: float | None, b: float | None, digits: int = 3) -> float | None:
    return round(a / b, digits) if a is not None and b else None
