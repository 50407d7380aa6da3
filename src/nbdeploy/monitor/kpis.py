"""Service KPIs per version from prediction-log records: traffic, errors, latency.

A status >= 500 is an error (the service failed); 400-499 is a rejection (the caller sent
something the service refused). Latency percentiles use linear interpolation between the
closest ranks (numpy's default), over every record that carries a latency.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import numpy as np
import pandas as pd

SERIES_COLUMNS = ["version", "t", "requests", "rate", "errors", "error_rate", "rejected",
                  "p50", "p95", "p99"]


def _summary(records: list[dict], seconds: float | None) -> dict[str, Any]:
    n = len(records)
    statuses = np.array([int(r.get("status", 200)) for r in records], dtype=int)
    errors = int((statuses >= 500).sum())
    rejected = int(((statuses >= 400) & (statuses < 500)).sum())
    latencies = np.array([r["latency_ms"] for r in records if r.get("latency_ms") is not None],
                         dtype=float)
    if len(latencies):
        p50, p95, p99 = (float(x) for x in np.percentile(latencies, [50, 95, 99]))
        mean = float(latencies.mean())
    else:
        p50 = p95 = p99 = mean = None
    return {
        "requests": n,
        "rate": n / seconds if seconds else None,
        "errors": errors,
        "error_rate": errors / n if n else 0.0,
        "rejected": rejected,
        "rejected_rate": rejected / n if n else 0.0,
        "shadow": sum(1 for r in records if r.get("shadow")),
        "latency_mean_ms": mean,
        "p50_ms": p50,
        "p95_ms": p95,
        "p99_ms": p99,
    }


def _by_version(records: list[dict]) -> dict[int, list[dict]]:
    groups: dict[int, list[dict]] = defaultdict(list)
    for rec in records:
        groups[int(rec["version"])].append(rec)
    return dict(sorted(groups.items()))


def kpis(
    records: list[dict], *, window: float | None = None, now: float | None = None
) -> dict[int, dict]:
    """Per version: requests, rate (req/s), errors, error_rate, rejected, p50/p95/p99 latency.

    With ``window`` only records with ``ts > now - window`` count and the rate is over the
    window; without it the rate is over the span from a version's first to last record
    (None with a single record).
    """
    if window is not None:
        if window <= 0:
            raise ValueError("window must be a positive number of seconds")
        now = time.time() if now is None else now
        records = [r for r in records if now - window < r["ts"] <= now]
    out = {}
    for version, recs in _by_version(records).items():
        if window is not None:
            seconds: float | None = window
        else:
            times = [r["ts"] for r in recs]
            seconds = (max(times) - min(times)) or None
        out[version] = _summary(recs, seconds)
    return out


def timeseries(records: list[dict], bucket: float = 60) -> pd.DataFrame:
    """Long table of KPIs per version and time bucket (``t`` = bucket start, epoch seconds)."""
    if bucket <= 0:
        raise ValueError("bucket must be a positive number of seconds")
    rows = []
    for version, recs in _by_version(records).items():
        buckets: dict[float, list[dict]] = defaultdict(list)
        for rec in recs:
            buckets[float(np.floor(rec["ts"] / bucket) * bucket)].append(rec)
        for start in sorted(buckets):
            summary = _summary(buckets[start], bucket)
            rows.append({
                "version": version, "t": start, "requests": summary["requests"],
                "rate": summary["rate"], "errors": summary["errors"],
                "error_rate": summary["error_rate"], "rejected": summary["rejected"],
                "p50": summary["p50_ms"], "p95": summary["p95_ms"], "p99": summary["p99_ms"],
            })
    return pd.DataFrame(rows, columns=SERIES_COLUMNS)
