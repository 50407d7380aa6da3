"""Monitoring figures: drift overlays, KPIs over time, live accuracy over time.

Figures are built with ``matplotlib.figure.Figure`` and the Agg canvas, never pyplot, so
they carry no global state and work in servers and threads; a notebook shows them inline.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from nbdeploy.monitor.drift import DriftReport

REFERENCE_COLOR, CURRENT_COLOR, DRIFT_COLOR = "#607d8b", "#ef6c00", "#c62828"


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _empty(fig: Figure, text: str) -> Figure:
    ax = fig.add_subplot()
    ax.text(0.5, 0.5, text, ha="center", va="center", color="#777")
    ax.set_axis_off()
    return fig


def fig_to_png(fig: Figure, dpi: int = 100) -> bytes:
    """The figure rendered as PNG bytes."""
    buffer = io.BytesIO()
    if fig.canvas is None or not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def plot_drift(
    report: DriftReport, reference: pd.DataFrame, current: pd.DataFrame, top: int = 6
) -> Figure:
    """Reference vs current distribution of the ``top`` most drifted features."""
    features = report.features_sorted()[:top]
    cols = min(3, len(features)) or 1
    rows = max(1, -(-len(features) // cols))
    fig = _figure(4.2 * cols, 3.0 * rows)
    if not features:
        return _empty(fig, "no shared features to compare")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, feat in zip(axes, features, strict=False):
        ref, cur = reference[feat.name], current[feat.name]
        if feat.kind == "numeric":
            ref_v = ref.dropna().to_numpy(dtype=float)
            cur_v = pd.to_numeric(cur, errors="coerce").dropna().to_numpy(dtype=float)
            both = np.concatenate([ref_v, cur_v])
            edges = np.histogram_bin_edges(both, bins=30) if len(both) else 10
            ax.hist(ref_v, bins=edges, density=True, alpha=0.55, color=REFERENCE_COLOR,
                    label="reference")
            ax.hist(cur_v, bins=edges, density=True, alpha=0.55, color=CURRENT_COLOR,
                    label="current")
        else:
            ref_s = ref.astype(str).value_counts(normalize=True)
            cur_s = cur.astype(str).value_counts(normalize=True)
            cats = list((ref_s.add(cur_s, fill_value=0)).sort_values(ascending=False).index[:12])
            x = np.arange(len(cats))
            ax.bar(x - 0.2, [ref_s.get(c, 0) for c in cats], 0.4, color=REFERENCE_COLOR,
                   label="reference")
            ax.bar(x + 0.2, [cur_s.get(c, 0) for c in cats], 0.4, color=CURRENT_COLOR,
                   label="current")
            ax.set_xticks(x, [c[:12] for c in cats], rotation=45, ha="right", fontsize=8)
            ax.set_ylabel("share")
        psi = "-" if feat.psi is None else f"{feat.psi:.2f}"
        title = f"{feat.name}  PSI {psi}" + ("  DRIFT" if feat.drifted else "")
        ax.set_title(title, color=DRIFT_COLOR if feat.drifted else "black", fontsize=10)
        ax.legend(fontsize=7)
    for ax in axes[len(features):]:
        ax.set_axis_off()
    fig.suptitle(f"Input drift: {report.verdict} ({len(report.drifted)} of "
                 f"{len(report.features)} features)")
    return fig


def _frame(series: Any) -> pd.DataFrame:
    frame = series if isinstance(series, pd.DataFrame) else pd.DataFrame(list(series or []))
    if not frame.empty:
        frame = frame.assign(time=pd.to_datetime(frame["t"], unit="s"))
    return frame


def plot_kpis(series: Any) -> Figure:
    """Latency percentiles, request rate and error rate over time, per version.

    ``series`` is ``kpis.timeseries()`` output (a DataFrame or its list of row dicts).
    """
    frame = _frame(series)
    fig = _figure(9, 7.5)
    if frame.empty:
        return _empty(fig, "no requests logged yet")
    lat, rate, err = fig.subplots(3, 1, sharex=True)
    for version, group in frame.groupby("version"):
        line = lat.plot(group["time"], group["p50"], marker=".", label=f"v{version} p50")[0]
        color = line.get_color()
        lat.plot(group["time"], group["p95"], "--", color=color, label=f"v{version} p95")
        lat.plot(group["time"], group["p99"], ":", color=color, label=f"v{version} p99")
        rate.plot(group["time"], group["rate"], marker=".", color=color, label=f"v{version}")
        err.plot(group["time"], group["error_rate"], marker=".", color=color, label=f"v{version}")
    lat.set_ylabel("latency (ms)")
    rate.set_ylabel("requests / s")
    err.set_ylabel("error rate")
    err.set_ylim(bottom=0)
    for ax in (lat, rate, err):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=3)
    fig.suptitle("Service KPIs")
    return fig


def plot_accuracy(series: Any) -> Figure:
    """Live accuracy (or MAE for regression) per version over time.

    ``series`` is ``live_metrics()`` output, or a DataFrame with version, t and
    accuracy (or mae) columns.
    """
    if isinstance(series, dict):
        rows = [{"version": v, **point} for v, q in series.get("versions", {}).items()
                for point in q.get("series", [])]
        frame = _frame(rows)
    else:
        frame = _frame(series)
    fig = _figure(9, 3.5)
    if frame.empty:
        return _empty(fig, "no feedback joined to predictions yet")
    metric = "accuracy" if "accuracy" in frame.columns else "mae"
    ax = fig.add_subplot()
    for version, group in frame.groupby("version"):
        ax.plot(group["time"], group[metric], marker="o", label=f"v{version}")
    ax.set_ylabel(f"live {metric}")
    if metric == "accuracy":
        ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle(f"Live {metric} from feedback")
    return fig
