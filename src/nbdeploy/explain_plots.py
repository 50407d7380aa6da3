"""Readable SHAP plots drawn on bare matplotlib Figures (Agg canvas, no pyplot global state)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LinearSegmentedColormap, Normalize
from matplotlib.figure import Figure

POSITIVE, NEGATIVE, NEUTRAL = "#e0304e", "#1e88e5", "#9e9e9e"
VALUE_MAP = LinearSegmentedColormap.from_list("nbdeploy_value", [NEGATIVE, "#8e44ad", POSITIVE])


class PlotFigure(Figure):
    """A matplotlib Figure that shows itself as a PNG in Jupyter without pyplot."""

    def _repr_png_(self) -> bytes:
        return to_png(self)


def new_figure(width: float, height: float) -> PlotFigure:
    """A Figure with its own Agg canvas, so drawing never touches the global backend."""
    fig = PlotFigure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def to_png(fig: Figure, dpi: int = 100) -> bytes:
    """The figure rendered as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    return buffer.getvalue()


def rank(importance: np.ndarray, top: int) -> tuple[list[int], list[int]]:
    """Column positions of the ``top`` most important columns (most first), and the rest."""
    if top < 1:
        raise ValueError(f"top={top}: show at least one feature")
    order = [int(i) for i in np.argsort(-np.asarray(importance), kind="stable")]
    if len(order) <= top:
        return order, []
    return order[: top - 1], order[top - 1:]  # one slot is kept for "other features"


def _others(count: int) -> str:
    return f"{count} other feature{'s' if count > 1 else ''}"


def short_value(value: object) -> str:
    """A feature value as a short label."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "missing"
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        return f"{value:.4g}"
    text = str(value)
    return text if len(text) <= 18 else text[:17] + "…"


def _style(ax: object, xlabel: str) -> None:
    ax.axvline(0, color="#555555", linewidth=0.8)
    ax.set_xlabel(xlabel)
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="x", color="#eeeeee")
    ax.set_axisbelow(True)


def bar(values: pd.DataFrame, *, top: int = 10, title: str = "", xlabel: str = "") -> PlotFigure:
    """Mean |contribution| per feature, most important on top, the tail summed as one bar."""
    importance = values.abs().mean().to_numpy()
    shown, rest = rank(importance, top)
    labels = [str(values.columns[i]) for i in shown]
    heights = [float(importance[i]) for i in shown]
    if rest:
        labels.append(f"sum of {_others(len(rest))}")
        heights.append(float(importance[rest].sum()))
    fig = new_figure(8, 0.42 * len(labels) + 1.6)
    ax = fig.add_subplot()
    y = np.arange(len(labels))[::-1]
    colors = [POSITIVE] * len(shown) + [NEUTRAL] * bool(rest)
    ax.barh(y, heights, color=colors, height=0.65)
    for yi, h in zip(y, heights, strict=True):
        ax.text(h, yi, f" {h:.3g}", va="center", fontsize=9)
    ax.set_yticks(y, labels)
    ax.set_xlim(0, max(heights) * 1.15 or 1)
    _style(ax, xlabel or "mean |SHAP value|")
    ax.set_title(title or "Feature importance", loc="left", fontsize=11)
    return fig


def _swarm(x: np.ndarray, width: float = 0.38, bins: int = 60) -> np.ndarray:
    """Vertical offsets that spread points sharing an x bin, like a beeswarm."""
    offsets = np.zeros(len(x))
    span = np.ptp(x) if len(x) else 0.0
    if span == 0:
        slot = np.zeros(len(x), dtype=int)
    else:
        slot = np.minimum(((x - x.min()) / span * bins).astype(int), bins - 1)
    counts = np.bincount(slot) if len(x) else np.zeros(1, dtype=int)
    step = width / max(1.0, counts.max() / 2)
    for b in np.flatnonzero(counts):
        members = np.flatnonzero(slot == b)
        k = np.arange(len(members))
        offsets[members] = ((k + 1) // 2) * np.where(k % 2, 1.0, -1.0) * step
    return offsets


def _colour_scale(column: pd.Series) -> np.ndarray:
    """Each value's position in its column, 0 (low) .. 1 (high); NaN when missing."""
    if pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column):
        scaled = column.astype(float).rank(pct=True)
    else:
        codes = pd.Series(pd.Categorical(column).codes, index=column.index).astype(float)
        codes[codes < 0] = np.nan
        scaled = codes / max(1.0, float(codes.max()) if codes.notna().any() else 1.0)
    return scaled.to_numpy(dtype=float, na_value=np.nan)


def beeswarm(values: pd.DataFrame, data: pd.DataFrame, *, top: int = 10, title: str = "",
             xlabel: str = "") -> PlotFigure:
    """Every row's contribution per feature, coloured by the feature's value (low blue, high red)."""
    shown, rest = rank(values.abs().mean().to_numpy(), top)
    lanes = [(str(values.columns[i]), values.iloc[:, i].to_numpy(float), _colour_scale(
        data.iloc[:, i])) for i in shown]
    if rest:
        lanes.append((f"sum of {_others(len(rest))}", values.iloc[:, rest].sum(axis=1).to_numpy(float),
                      None))
    fig = new_figure(8.5, 0.5 * len(lanes) + 1.7)
    ax = fig.add_subplot()
    for pos, (_, x, colour) in zip(range(len(lanes) - 1, -1, -1), lanes, strict=True):
        y = pos + _swarm(x)
        known = np.zeros(len(x), bool) if colour is None else ~np.isnan(colour)
        ax.scatter(x[~known], y[~known], s=12, color=NEUTRAL, linewidths=0)
        if known.any():
            ax.scatter(x[known], y[known], s=12, c=colour[known], cmap=VALUE_MAP, vmin=0, vmax=1,
                       linewidths=0)
    ax.set_yticks(range(len(lanes) - 1, -1, -1), [lane[0] for lane in lanes])
    _style(ax, xlabel or "SHAP value (impact on model output)")
    bar_ = fig.colorbar(ScalarMappable(Normalize(0, 1), VALUE_MAP), ax=ax, ticks=[0, 1],
                        aspect=40, pad=0.01)
    bar_.ax.set_yticklabels(["low", "high"])
    bar_.set_label("feature value (grey: missing / not one feature)")
    ax.set_title(title or "Contributions per row", loc="left", fontsize=11)
    return fig


def waterfall(contributions: pd.Series, row: pd.Series, base: float, output: float, *,
              top: int = 10, title: str = "", xlabel: str = "") -> PlotFigure:
    """How one row goes from the base value to its output, one feature at a time."""
    shown, rest = rank(contributions.abs().to_numpy(), top)
    steps = [(f"{contributions.index[i]} = {short_value(row.iloc[i])}", float(contributions.iloc[i]))
             for i in shown]
    if rest:
        steps.append((_others(len(rest)), float(contributions.iloc[rest].sum())))
    fig = new_figure(8.5, 0.45 * len(steps) + 1.9)
    ax = fig.add_subplot()
    start = base
    for pos, (_, value) in enumerate(reversed(steps)):  # least important at the bottom
        colour = POSITIVE if value >= 0 else NEGATIVE
        ax.barh(pos, value, left=start, color=colour, height=0.6)
        ax.text(start + value, pos, f" {value:+.3g} ",
                va="center", ha="left" if value >= 0 else "right", fontsize=9)
        start += value
    ax.set_yticks(range(len(steps)), [label for label, _ in reversed(steps)])
    rising = output >= base  # put the two labels on the sides facing away from each other
    for x, name, align in ((base, f"E[f(X)] = {base:.4g}", "right" if rising else "left"),
                           (output, f"f(x) = {output:.4g}", "left" if rising else "right")):
        ax.axvline(x, color="#555555", linestyle=":", linewidth=1)
        ax.annotate(name, (x, 1.0), xycoords=("data", "axes fraction"), ha=align, va="bottom",
                    fontsize=9, xytext=(3 if align == "left" else -3, 2),
                    textcoords="offset points")
    ends = np.cumsum([base] + [value for _, value in reversed(steps)])
    lo, hi = min(ends.min(), output), max(ends.max(), output)
    pad = 0.2 * (hi - lo) or 1.0
    ax.set_xlim(lo - pad, hi + pad)  # room for the value labels on either side
    ax.set_xlabel(xlabel or "model output")
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title(title or "One prediction, explained", loc="left", fontsize=11, pad=16)
    return fig
