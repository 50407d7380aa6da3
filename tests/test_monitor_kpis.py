"""Service KPIs: counts, rates and latency percentiles on constructed records."""

from __future__ import annotations

import pytest

from nbdeploy.monitor.kpis import SERIES_COLUMNS, kpis, timeseries


def rec(ts: float, version: int, latency: float | None, status: int = 200, **extra) -> dict:
    return {"request_id": f"{version}-{ts}", "ts": ts, "version": version,
            "latency_ms": latency, "status": status, **extra}


def test_counts_rates_and_percentiles_are_exact() -> None:
    # v1: 100 requests at t=1001..1100 with latencies 1..100 ms; 5 errors, 3 rejections.
    records = [rec(1000.0 + i, 1, float(i)) for i in range(1, 101)]
    for i in range(5):
        records[i]["status"] = 500 + i
    for i in range(5, 8):
        records[i]["status"] = 404
    records += [rec(1050.0, 2, 10.0), rec(1060.0, 2, 30.0, status=200, shadow=True)]
    out = kpis(records)
    v1 = out[1]
    assert (v1["requests"], v1["errors"], v1["rejected"]) == (100, 5, 3)
    assert v1["error_rate"] == 0.05 and v1["rejected_rate"] == 0.03
    # linear interpolation between ranks: 99*q-th position of 1..100
    assert (v1["p50_ms"], v1["p95_ms"], v1["p99_ms"]) == pytest.approx((50.5, 95.05, 99.01))
    assert v1["latency_mean_ms"] == pytest.approx(50.5)
    assert v1["rate"] == pytest.approx(100 / 99)  # over the first-to-last span
    assert out[2]["requests"] == 2 and out[2]["shadow"] == 1 and out[2]["p50_ms"] == 20.0
    assert list(out) == [1, 2]


def test_window_filters_and_sets_the_rate() -> None:
    records = [rec(1000.0 + i, 1, 5.0) for i in range(100)]  # t = 1000..1099
    out = kpis(records, window=10, now=1099.0)
    assert out[1]["requests"] == 10 and out[1]["rate"] == 1.0
    assert kpis(records, window=10, now=5000.0) == {}
    with pytest.raises(ValueError, match="positive"):
        kpis(records, window=0)


def test_missing_latency_and_single_record() -> None:
    out = kpis([rec(5.0, 4, None, status=503)])
    assert out[4]["p99_ms"] is None and out[4]["rate"] is None and out[4]["error_rate"] == 1.0


def test_timeseries_buckets() -> None:
    records = [rec(t, 1, lat) for t, lat in ((0, 1.0), (30, 3.0), (61, 7.0))]
    records.append(rec(65, 2, 2.0, status=502))
    frame = timeseries(records, bucket=60)
    assert list(frame.columns) == SERIES_COLUMNS
    assert frame[["version", "t", "requests", "errors"]].values.tolist() == [
        [1, 0.0, 2, 0], [1, 60.0, 1, 0], [2, 60.0, 1, 1]]
    assert frame["p50"].tolist() == [2.0, 7.0, 2.0]
    assert frame["rate"].tolist() == pytest.approx([2 / 60, 1 / 60, 1 / 60])
    assert timeseries([]).empty
