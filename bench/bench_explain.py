"""SHAP explanation speed: nbdeploy against plain ``shap.TreeExplainer`` on the same data.

Rows:
- in the notebook, 1000 rows of a 100-tree random forest (breast cancer data, rows drawn with
  replacement): ``nbdeploy.explain`` end to end (explainer choice, contributions, outputs,
  DataFrame), best of REPEATS. Target (issue 5): under 0.5 s. Beside it, the baseline
  ``shap.TreeExplainer(model).shap_values(X)`` (constructor included) and the ratio ours/plain;
- one-row ``/explain`` latency as served: the 100-tree random forest (then a 100-tree xgboost
  classifier) is deployed with nbdeploy (a real ``bentoml serve``), and CALLS one-row requests
  are sent over HTTP, one at a time on a keep-alive connection. The figure is the server-side
  p50, read from the ``Server-Timing: explain;dur=…`` header the generated service sets (the
  handler: rows to frame, SHAP, JSON-ready answer; not pydantic validation or the socket),
  with the HTTP round trip p50 beside it. Target: server-side p50 under 20 ms. Baseline: a
  prebuilt ``shap.TreeExplainer.shap_values(row)`` in this process, p50.

The servers are stopped by PID at the end, whatever happens.

Run: python -m bench.bench_explain   (or python bench/bench_explain.py)
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # when run as a script
    sys.path.insert(0, str(ROOT))

from bench.workdir import in_workdir  # noqa: E402

REPEATS = 7  # 1000-row runs; the best time of each contender is kept
CALLS = 300  # one-row calls per contender
WARMUP = 20  # one-row calls before timing (the first builds the served explainer)


def _data() -> tuple[pd.DataFrame, pd.Series, pd.DataFrame]:
    """Training data and 1000 rows to explain."""
    from sklearn.datasets import load_breast_cancer

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


def _p50_ms(fn: Callable[[], object]) -> float:
    """p50 of one call in this process, in milliseconds (after a few warm-up calls)."""
    for _ in range(WARMUP):
        fn()
    times = []
    for _ in range(CALLS):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return float(np.percentile(times, 50) * 1000)


def _served_latency(url: str, body: dict) -> tuple[float, float, float]:
    """(server-side p50, server-side p95, HTTP p50) of one-row /explain calls, in ms."""
    import httpx

    server, http = [], []
    with httpx.Client(trust_env=False, timeout=60) as client:
        for i in range(WARMUP + CALLS):
            started = time.perf_counter()
            resp = client.post(f"{url}/explain", json=body)
            elapsed = time.perf_counter() - started
            resp.raise_for_status()
            if i >= WARMUP:
                http.append(elapsed * 1000)
                server.append(float(resp.headers["server-timing"].split("dur=")[1]))
    s50, s95 = np.percentile(server, [50, 95])
    return float(s50), float(s95), float(np.percentile(http, 50))


def _one_row_served(name: str, model: Any, X: pd.DataFrame, deployment: str) -> dict:
    """Deploy ``model``, time one-row /explain over HTTP, stop the server (and router) by PID."""
    import shap

    from nbdeploy import api
    from nbdeploy.registry import Registry
    from nbdeploy.serve import process

    row = X.iloc[[0]]
    body = {"rows": json.loads(row.to_json(orient="records"))}
    plain = shap.TreeExplainer(model)
    base50 = _p50_ms(lambda: plain.shap_values(row, check_additivity=False))
    dep = api.deploy(model, deployment, X)
    try:
        s50, s95, h50 = _served_latency(str(dep.url), body)
    finally:
        process.stop_pid(Registry().deployment(deployment).get("router_pid"), grace=3.0)
        process.stop_pid(dep.row.get("pid"), grace=5.0)
    return {
        "benchmark": f"one-row /explain latency, {name}, served by nbdeploy",
        "figure": f"server-side p50 {s50:.2f} ms, p95 {s95:.2f} ms (Server-Timing); "
                  f"HTTP round trip p50 {h50:.2f} ms",
        "baseline": f"p50 {base50:.2f} ms (prebuilt shap.TreeExplainer.shap_values, in process)",
        "ratio": round(s50 / base50, 2),
        "target": "server-side p50 < 20 ms",
        "met": s50 < 20,
    }


def _in_home(work: Path) -> list[dict]:
    """_run with NBDEPLOY_HOME / BENTOML_HOME in ``work`` (set before bentoml is imported)."""
    os.environ.update(NBDEPLOY_HOME=str(work / "nbdeploy"), BENTOML_HOME=str(work / "bentoml"),
                      BENTOML_DO_NOT_TRACK="true")
    return _run()


def _run() -> list[dict]:
    import shap
    import xgboost
    from sklearn.ensemble import RandomForestClassifier

    from nbdeploy.explanations import explain

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
            "figure": f"{ours:.3f} s (nbdeploy.explain, best of {REPEATS})",
            "baseline": f"{plain:.3f} s (shap.TreeExplainer(model).shap_values(X))",
            "ratio": round(ours / plain, 2),
            "target": "< 0.5 s",
            "met": ours < 0.5,
        },
        _one_row_served("random forest (100 trees)", forest, X, "bench-explain-rf"),
        _one_row_served("xgboost (100 trees)", boosted, X, "bench-explain-xgb"),
    ]


def run() -> list[dict]:
    """Measure every contender in a throwaway home and return the benchmark rows."""
    if os.environ.get("NBDEPLOY_BENCH_HOME"):  # bench.run_all already gave this run a home
        return _run()
    if "bentoml" in sys.modules:
        raise RuntimeError("bench_explain must set BENTOML_HOME before bentoml is imported; "
                           "run it with python -m bench.bench_explain or bench.run_all")
    return in_workdir("bench-explain-", _in_home)


def main() -> None:
    """Print the rows as a small table."""
    table = run()
    widths = {key: max(len(key), *(len(str(r[key])) for r in table)) for key in table[0]}
    print("  ".join(key.ljust(widths[key]) for key in widths))
    for row in table:
        print("  ".join(str(row[key]).ljust(widths[key]) for key in widths))


if __name__ == "__main__":
    main()
