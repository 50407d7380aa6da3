"""How fast ``%deploy`` hands control back, and how responsive the kernel stays meanwhile.

Baselines: the same magic with ``--wait`` (a blocking deploy), and a trivial cell's latency
on an idle kernel. Run alone: ``python -m bench.bench_notebook``."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from typing import Any


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def run() -> list[dict[str, Any]]:
    """Rows: %deploy return time vs a blocking deploy; trivial-cell latency during vs idle."""
    home = tempfile.mkdtemp(prefix="nbdeploy-bench-nb-")
    os.environ.setdefault("NBDEPLOY_HOME", os.path.join(home, "nbdeploy"))
    os.environ.setdefault("BENTOML_HOME", os.path.join(home, "bentoml"))
    from IPython.testing.globalipapp import start_ipython

    from nbdeploy.notebook import jobs

    ip = start_ipython()
    ip.run_line_magic("load_ext", "nbdeploy")
    ip.run_cell("from sklearn.datasets import load_breast_cancer\n"
                "from sklearn.ensemble import GradientBoostingClassifier\n"
                "X, y = load_breast_cancer(return_X_y=True, as_frame=True)\n"
                "models = [GradientBoostingClassifier(n_estimators=20 + i, random_state=0).fit(X, y)"
                " for i in range(4)]\n")

    def cell(code: str) -> float:
        start = time.perf_counter()
        ip.run_cell(code, silent=True)
        return time.perf_counter() - start

    idle = [cell("x = 1 + 1") for _ in range(200)]
    first = cell("m0 = models[0]\n%deploy m0 --name bench-nb-0 --sample X --no-serve")
    jobs.wait("bench-nb-0")
    returns, cells, during = [], [], []
    for i in (1, 2, 4, 5):
        ip.user_ns[f"m{i}"] = ip.user_ns["models"][i % 4]
        start = time.perf_counter()
        ip.run_line_magic("deploy", f"m{i} --name bench-nb-{i} --sample X --no-serve")
        returns.append(time.perf_counter() - start)
        while jobs.running():
            during.append(cell("x = 1 + 1"))
            time.sleep(0.01)
    for i in (1, 2):
        cells.append(cell(f"%deploy m{i} --name bench-nb-{i}b --sample X --no-serve"))
        jobs.wait(f"bench-nb-{i}b")
    blocking = cell("m3 = models[3]\n%deploy m3 --name bench-nb-3 --sample X --no-serve --wait")
    ret = statistics.median(returns)
    p50_idle, p50_during = statistics.median(idle), statistics.median(during or [float("nan")])
    p99_during = sorted(during)[int(len(during) * 0.99) - 1] if during else float("nan")
    return [
        {"benchmark": "%deploy returns control", "figure": _ms(ret),
         "baseline": f"blocking deploy {blocking:.2f} s", "ratio": round(ret / blocking, 4),
         "target": "< 50 ms", "met": ret < 0.05,
         "note": f"the magic call itself; the whole cell including the terminal repr of the panel "
                 f"{_ms(statistics.median(cells))}; first call in a fresh kernel (imports) {_ms(first)}"},
        {"benchmark": "trivial cell during a deploy (p50)", "figure": _ms(p50_during),
         "baseline": f"idle kernel {_ms(p50_idle)}", "ratio": round(p50_during / p50_idle, 2),
         "target": "responsive (p99 < 100 ms)", "met": p99_during < 0.1,
         "note": f"{len(during)} cells ran during 4 background deploys; p99 {_ms(p99_during)}"},
    ]


def main() -> None:
    for row in run():
        print(f"{row['benchmark']:<40} {row['figure']:>12}  vs {row['baseline']:<28} "
              f"ratio {row['ratio']:<8} target {row['target']} {'✓' if row['met'] else '✗'}  {row['note']}")


if __name__ == "__main__":
    main()
