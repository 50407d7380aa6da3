"""Explain a model's predictions in the notebook with SHAP, exactly as the served /explain does."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from nbdeploy import explain_plots as plots
from nbdeploy.package.runtime.explainer import (
    Explainer,
    ExplainTimeout,
    Progress,
    make_explainer,
)

__all__ = ["DEFAULT_MAX_SECONDS", "ExplainTimeout", "Explanation", "explain"]

DEFAULT_MAX_SECONDS = 120.0  # time budget of the model-agnostic explainer in the notebook

_NUM = " style='text-align:right'"
_SPACE_LABELS = {
    "probability": "probability",
    "log_odds": "log-odds",
    "margin": "raw score (margin)",
    "prediction": "prediction",
}


@dataclass(frozen=True, repr=False)
class Explanation:
    """SHAP contributions of each original column for each explained row, plus plots."""

    values: pd.DataFrame  # rows x original columns: contribution of each column
    base_values: np.ndarray  # per row: expected output over the background / training data
    outputs: np.ndarray  # per row: the model's output in ``output_space``
    data: pd.DataFrame  # the explained rows, as given
    classes: list | None  # class label explained per row, None for regressors
    output_space: str  # probability | log_odds | margin | prediction
    explainer: str  # tree | linear | kernel
    _all: tuple = field(repr=False, default=())  # (base, contributions, outputs) for every class
    _labels: list | None = field(repr=False, default=None)

    def __len__(self) -> int:
        return len(self.values)

    def __repr__(self) -> str:
        top = ", ".join(str(c) for c in self.importance().index[:3])
        return (f"<Explanation of {len(self)} row(s) x {self.values.shape[1]} column(s): "
                f"{self._subtitle()}; most important: {top}>")

    def for_class(self, class_index: int) -> Explanation:
        """The same rows explained for one class (index into the model's classes)."""
        base, phi, out = self._all
        if not 0 <= class_index < out.shape[1]:
            raise ValueError(f"class_index={class_index} is out of range: the model has "
                             f"{out.shape[1]} output(s); use 0..{out.shape[1] - 1}")
        chosen = np.full(len(out), class_index)
        return replace(self, **_pick(base, phi, out, chosen, self._labels, self.data))

    def importance(self) -> pd.Series:
        """Mean |contribution| per column, most important first."""
        return self.values.abs().mean().sort_values(ascending=False)

    def _subtitle(self) -> str:
        parts = [f"{self.explainer} explainer", _SPACE_LABELS.get(self.output_space, "output")]
        if self.classes is not None:
            labels = {str(c) for c in self.classes}
            parts.append(f"class {labels.pop()}" if len(labels) == 1 else "predicted class")
        return ", ".join(parts)

    def plot_bar(self, top: int = 10) -> Figure:
        """Mean |contribution| per feature, sorted, the tail summed as 'other features'."""
        title = f"Feature importance over {len(self)} row(s)\n{self._subtitle()}"
        return plots.bar(self.values, top=top, title=title,
                         xlabel=f"mean |SHAP value| ({_SPACE_LABELS[self.output_space]})")

    def plot_beeswarm(self, top: int = 10) -> Figure:
        """Each row's contribution per feature, coloured by the feature's value."""
        title = f"Contributions of {len(self)} row(s)\n{self._subtitle()}"
        return plots.beeswarm(self.values, self.data, top=top, title=title,
                              xlabel=f"SHAP value ({_SPACE_LABELS[self.output_space]})")

    def plot_waterfall(self, row: int = 0, top: int = 10) -> Figure:
        """How row ``row`` (a position) goes from the base value to its output."""
        if not -len(self) <= row < len(self):
            raise IndexError(f"row={row} is out of range: this explanation has {len(self)} rows")
        label = "" if self.classes is None else f", class {self.classes[row]}"
        title = (f"Row {self.values.index[row]!s}: {_SPACE_LABELS[self.output_space]}"
                 f" {self.outputs[row]:.4g}{label} ({self.explainer} explainer)")
        return plots.waterfall(self.values.iloc[row], self.data.iloc[row],
                               float(self.base_values[row]), float(self.outputs[row]), top=top,
                               title=title, xlabel=_SPACE_LABELS[self.output_space])

    @staticmethod
    def to_png(fig: Figure) -> bytes:
        """A figure from one of the plot methods as PNG bytes."""
        return plots.to_png(fig)

    def to_dict(self) -> dict:
        """JSON-ready, the same shape as the served /explain answer."""
        return {
            "columns": [str(c) for c in self.values.columns],
            "base_values": self.base_values.tolist(),
            "contributions": self.values.to_numpy(float).tolist(),
            "outputs": self.outputs.tolist(),
            "output_space": self.output_space,
            "class": None if self.classes is None else list(self.classes),
            "explainer": self.explainer,
        }

    def _repr_html_(self) -> str:
        one = len(self) == 1
        if one:
            contrib = self.values.iloc[0]
            order = contrib.abs().sort_values(ascending=False).index[:10]
            head = "<tr><th>feature</th><th>value</th><th>contribution</th></tr>"
            body = "".join(
                f"<tr><td>{html.escape(str(c))}</td>"
                f"<td{_NUM}>{html.escape(plots.short_value(self.data.iloc[0][c]))}</td>"
                f"<td{_NUM}>{contrib[c]:+.4g}</td></tr>" for c in order)
            fig = self.plot_waterfall(0)
        else:
            mean = self.values.mean()
            order = self.importance().index[:10]
            head = "<tr><th>feature</th><th>mean |contribution|</th><th>mean contribution</th></tr>"
            body = "".join(
                f"<tr><td>{html.escape(str(c))}</td><td{_NUM}>{self.values[c].abs().mean():.4g}</td>"
                f"<td{_NUM}>{mean[c]:+.4g}</td></tr>" for c in order)
            fig = self.plot_bar()
        png = base64.b64encode(self.to_png(fig)).decode("ascii")
        more = self.values.shape[1] - len(order)
        note = f"<p><small>…and {more} more column(s)</small></p>" if more > 0 else ""
        summary = f"of {len(self)} row(s): {self._subtitle()}; base {np.mean(self.base_values):.4g}"
        if one:
            summary += f", output {self.outputs[0]:.4g}"
        return (f"<div class='nbdeploy-explanation'><p><b>SHAP explanation</b> "
                f"{html.escape(summary)}</p>"
                f"<div style='display:flex;gap:1em;align-items:flex-start;flex-wrap:wrap'>"
                f"<div><table>{head}{body}</table>{note}</div>"
                f"<img alt='SHAP plot' style='max-width:640px' src='data:image/png;base64,{png}'>"
                f"</div></div>")


def _pick(base: np.ndarray, phi: np.ndarray, out: np.ndarray, chosen: np.ndarray,
          labels: list | None, data: pd.DataFrame) -> dict[str, Any]:
    """The per-row fields of an Explanation for one chosen class slot per row."""
    rows = np.arange(len(out))
    return {
        "values": pd.DataFrame(phi[rows, chosen], index=data.index, columns=data.columns),
        "base_values": base[rows, chosen],
        "outputs": out[rows, chosen],
        "classes": None if labels is None else [labels[i] for i in chosen],
    }


def _bar(total: int) -> tuple[Progress, Any]:
    """A tqdm progress callback (notebook widget when available) and the bar to close."""
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc="explaining rows", unit="row", leave=False)

    def update(done: int, _total: int) -> None:
        bar.update(done - bar.n)

    return update, bar


def explain(model_or_name: Any, X: Any, *, background: pd.DataFrame | None = None,
            class_index: int | None = None, progress: bool = True, max_background: int = 100,
            seed: int = 0, nsamples: int | None = None,
            max_seconds: float | None = DEFAULT_MAX_SECONDS) -> Explanation:
    """Explain ``X`` for a model object, or a deployment ``"name"`` / ``"name:version"``.

    ``background`` is the reference sample for linear and model-agnostic explainers (default: the
    deployment's stored sample, else X itself). ``class_index`` fixes the class explained;
    by default each row explains its predicted class (the positive class if binary).

    The model-agnostic explainer (models that are neither trees nor linear) shows a progress
    bar and is bounded by ``max_seconds`` (None: unbounded): after each row it projects the
    total time, and as soon as that exceeds the budget it raises ``ExplainTimeout`` saying how
    long it would take, rather than lowering ``nsamples`` behind your back (the values would
    then differ from the served /explain). Explain fewer rows, or raise ``max_seconds`` or
    lower ``nsamples`` to go on.
    """
    model, as_input = model_or_name, None
    if isinstance(model_or_name, str):
        from nbdeploy.artifacts import load_model

        model, stored = load_model(model_or_name)
        background = stored if background is None else background
        as_input = _deployed_input(model_or_name)
    if background is None:
        if not isinstance(X, pd.DataFrame):
            raise ValueError("pass X as a DataFrame with the model's columns, or give background=")
        background = X
    explainer: Explainer = make_explainer(model, background, max_background=max_background,
                                          seed=seed, nsamples=nsamples, as_input=as_input)
    explainer.check_class_index(class_index)
    data = explainer.frame(X)
    callback, bar = _bar(len(data)) if progress and explainer.kind == "kernel" else (None, None)
    try:
        base, phi, out = explainer.explain_arrays(data, progress=callback, max_seconds=max_seconds)
    finally:
        if bar is not None:
            bar.close()
    labels = explainer.classes
    chosen = explainer.choose(out, class_index)
    return Explanation(data=data, output_space=explainer.output_space, explainer=explainer.kind,
                       _all=(base, phi, out), _labels=labels,
                       **_pick(base, phi, out, chosen, labels, data))


def _deployed_input(ref: str) -> Any:
    """What the deployed service's /predict hands the model: a frame or, for a model fitted on
    a numpy array, the array (frames.model_input with the version's schema)."""
    from nbdeploy.package.runtime import frames
    from nbdeploy.refs import parse_ref
    from nbdeploy.registry import Registry

    name, version = parse_ref(ref)
    schema = Registry().version(name, version)["schema"]
    return lambda frame: frames.model_input(frame, schema)
