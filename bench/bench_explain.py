"""SHAP explanation speed: nbdeploy against plain ``shap.TreeExplainer`` on the same data.

Rows:
- in the notebook, 1000 rows of a 100-tree random forest (breast cancer data, rows drawn with
  replacement): ``nbdeploy.explain`` end to end (explainer choice, contributions, outputs,
  DataFrame) against ``shap.TreeExplainer(model).shap_values(X)`` (constructor included).
  Ratio = ours / baseline time; target <= 1.5;
- one-row latency as served: ``Explainer.explain(row)`` (built once, as the bento does) against
  ``TreeExplainer.shap_values(row)`` on a prebuilt explainer; p50 and p95 over repeated calls.
  Target: p50 under 20 ms; the ratio says what the JSON-ready answer costs over bare shap;
- the same one-row latency for a 100-tree xgboost classifier, where the DataFrame to DMatrix
  conversion dominates.

Run: python -m bench.bench_explain   (or python bench/bench_explain.py)
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd
import shap
import xgboost
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier

from nbdeploy.explanations import explain
from nbdeploy.package.runtime.explainer import make_explainer

REPEATS = 7  # 1000-row runs; the best time of each contender is kept
CALLS = 300  # one-row calls per contender


def _data() -> tuple[pd.DataFrame, pd.Series, pd.DataFrame]:
    """Training data and 1000 rows to explain."""
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    return X, y, X.sample(n=1000, replace=True, random_state=0).reset_index(drop=True)


def _best(fn: Callable[[], object]) -> float:
    """Best wall time of REPEATS calls, in seconds."""
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def _latency(fn: Callable[[], object]) -> tuple[float, float]:
    """p50 and p95 of one call, in milliseconds (after a few warm-up calls)."""
    for _ in range(10):
        fn()
    times = []
    for _ in range(CALLS):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    p50, p95 = np.percentile(times, [50, 95]) * 1000
    return float(p50), float(p95)


def _one_row(name: str, model: object, X: pd.DataFrame) -> dict:
    """One-row latency row: runtime Explainer.explain vs a prebuilt shap.TreeExplainer."""
    row = X.iloc[[0]]
    ours = make_explainer(model, X)
    plain = shap.TreeExplainer(model)
    o50, o95 = _latency(lambda: ours.explain(row))
    b50, b95 = _latency(lambda: plain.shap_values(row, check_additivity=False))
    return {
        "benchmark": f"one-row explain latency, {name}",
        "figure": f"p50 {o50:.2f} ms, p95 {o95:.2f} ms (runtime Explainer.explain, JSON-ready)",
        "baseline": f"p50 {b50:.2f} ms, p95 {b95:.2f} ms (shap.TreeExplainer.shap_values)",
        "ratio": round(o50 / b50, 2),
        "target": "p50 < 20 ms",
        "met": o50 < 20,
    }


def run() -> list[dict]:
    """Measure every contender in this run and return the benchmark rows."""
    X, y, rows = _data()
    forest = RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=1).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = _best(lambda: explain(forest, rows, background=X, progress=False))
        plain = _best(lambda: shap.TreeExplainer(forest).shap_values(rows))
    boosted = xgboost.XGBClassifier(n_estimators=100, max_depth=4).fit(X, y)
    return [
        {
            "benchmark": "explain 1000 rows, random forest (100 trees), in the notebook",
            "figure": f"{ours:.3f} s (nbdeploy.explain)",
            "baseline": f"{plain:.3f} s (shap.TreeExplainer(model).shap_values(X))",
            "ratio": round(ours / plain, 2),
            "target": "<= 1.5x the baseline time",
            "met": ours <= 1.5 * plain,
        },
        _one_row("random forest (100 trees)", forest, X),
        _one_row("xgboost (100 trees)", boosted, X),
    ]


def main() -> None:
    """Print the rows as a small table."""
    table = run()
    widths = {key: max(len(key), *(len(str(r[key])) for r in table)) for key in table[0]}
    print("  ".join(key.ljust(widths[key]) for key in widths))
    for row in table:
        print("  ".join(str(row[key]).ljust(widths[key]) for key in widths))


if __name__ == "__main__":
    main()
