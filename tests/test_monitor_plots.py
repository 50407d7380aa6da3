"""Monitoring figures render to PNG without pyplot, with and without data."""

from __future__ import annotations

import numpy as np
import pandas as pd

from nbdeploy.monitor.drift import drift_report
from nbdeploy.monitor.kpis import timeseries
from nbdeploy.monitor.plots import fig_to_png, plot_accuracy, plot_drift, plot_kpis


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height from the PNG header."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def test_drift_plot_flags_drifted_features() -> None:
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"x": rng.normal(0, 1, 800), "c": rng.choice(list("abc"), 800),
                        "y": rng.normal(0, 1, 800)})
    cur = pd.DataFrame({"x": rng.normal(1, 1, 400), "c": rng.choice(list("abcd"), 400),
                        "y": rng.normal(0, 1, 400)})
    report = drift_report(ref, cur)
    fig = plot_drift(report, ref, cur, top=2)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == 2 and all("DRIFT" in t for t in titles)  # the two drifted ones
    png = fig_to_png(fig)
    assert png_size(png) == (840, 300) and len(png) > 10_000


def test_kpi_and_accuracy_plots() -> None:
    records = [{"ts": float(t), "version": v, "latency_ms": 5.0 + v * (t % 7),
                "status": 500 if t % 13 == 0 else 200}
               for t in range(0, 600, 3) for v in (1, 2)]
    fig = plot_kpis(timeseries(records, bucket=60))
    assert len(fig.axes) == 3
    assert len(fig.axes[0].get_lines()) == 6  # p50/p95/p99 for two versions
    png = fig_to_png(fig)
    assert png_size(png) == (900, 750) and len(png) > 20_000

    live = {"versions": {1: {"series": [{"t": 0.0, "n": 5, "accuracy": 0.8},
                                        {"t": 3600.0, "n": 5, "accuracy": 0.6}]},
                         2: {"series": [{"t": 0.0, "n": 5, "accuracy": 0.9}]}}}
    fig = plot_accuracy(live)
    lines = fig.axes[0].get_lines()
    assert [list(line.get_ydata()) for line in lines] == [[0.8, 0.6], [0.9]]
    assert len(fig_to_png(fig)) > 10_000


def test_empty_inputs_still_render() -> None:
    for fig in (plot_kpis(timeseries([])), plot_accuracy({"versions": {}}),
                plot_accuracy(pd.DataFrame())):
        png = fig_to_png(fig)
        assert png_size(png)[0] > 100 and len(png) > 2_000
