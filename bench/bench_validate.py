"""Validation batch speed: `nbdeploy validate --parallel 2` against plain `papermill`, one by one.

Eight small validation notebooks (pandas + scikit-learn, fit a model, record its AUC),
each about a second of cell work. Baseline: the `papermill` command run once per
notebook, one after another, in the same environment and the same run.

Rows:
- wall time of the whole batch (target: nbdeploy at least 1.7x faster). The papermill
  command pays an interpreter start and papermill import per notebook (seconds on a busy
  2-core machine), so a second row compares against ``papermill.execute_notebook`` called
  one after another in one process: the gain from parallel kernels alone;
- time per notebook beyond its cells (run time minus the cells' own time, from the
  per-cell durations papermill writes into the executed notebook), one kernel at a time,
  kernel start included (nbdeploy forks kernels from a warm fork server, see
  ``nbdeploy.validate.fastkernel``, and, as ``nbdeploy validate`` does, starts the next
  run's kernel while a run executes, see ``nbdeploy.validate.spares``; the fork server's own
  start is paid once per process and is included too). Baseline:
  ``papermill.execute_notebook`` on the same notebooks in the same process.
  Target: < 0.3 s per notebook.

Run: python -m bench.bench_validate
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

N_NOTEBOOKS = 8
PARALLEL = 2

CELLS = [
    "import numpy as np\nimport pandas as pd\n"
    "from sklearn.datasets import make_classification\n"
    "from sklearn.ensemble import RandomForestClassifier\n"
    "from sklearn.metrics import roc_auc_score\n"
    "from sklearn.model_selection import train_test_split\n\nimport nbdeploy",
    "X, y = make_classification(n_samples=4000, n_features=20, random_state=seed)\n"
    "frame = pd.DataFrame(X, columns=[f'f{i}' for i in range(X.shape[1])])\n"
    "X_train, X_test, y_train, y_test = train_test_split(frame, y, random_state=seed)",
    "model = RandomForestClassifier(n_estimators=80, random_state=seed, n_jobs=1)\n"
    "model.fit(X_train, y_train)",
    "auc = roc_auc_score(y_test, model.predict_proba(X_test)[:, 1])\n"
    "nbdeploy.record('auc', auc)\nassert auc > 0.8, f'auc {auc:.3f} too low'",
]


def _notebooks(folder: Path) -> list[Path]:
    """Write the benchmark notebooks (one per seed) into ``folder``."""
    paths = []
    for seed in range(N_NOTEBOOKS):
        params = new_code_cell(f"seed = {seed}", metadata={"tags": ["parameters"]})
        nb = new_notebook(
            cells=[params, *(new_code_cell(c) for c in CELLS)],
            metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}},
        )
        path = folder / f"check_{seed}.ipynb"
        nbformat.write(nb, str(path))
        paths.append(path)
    return paths


def _cell_seconds(path: Path) -> float:
    """Total time the notebook's cells ran, from papermill's per-cell metadata."""
    nb = nbformat.read(str(path), as_version=4)
    return sum(c.metadata.get("papermill", {}).get("duration") or 0.0 for c in nb.cells)


def _papermill_one_by_one(notebooks: list[Path], out: Path) -> float:
    """Baseline: the papermill command per notebook, sequentially; wall time."""
    papermill = Path(sys.executable).with_name("papermill")
    out.mkdir(parents=True)
    started = time.perf_counter()
    for nb in notebooks:
        seed = nb.stem.split("_")[1]
        subprocess.run(
            [str(papermill), str(nb), str(out / nb.name), "--no-progress-bar",
             "--log-level", "ERROR", "-p", "seed", seed],
            check=True, capture_output=True,
        )
    return time.perf_counter() - started


def _nbdeploy_batch(notebooks: list[Path], out: Path) -> float:
    """nbdeploy's CLI: one process, PARALLEL kernels; wall time."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "nbdeploy.validate.cli", *map(str, notebooks),
         "--parallel", str(PARALLEL), "--out", str(out), "--require", "auc>0.8"],
        capture_output=True, text=True,
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"nbdeploy validate failed:\n{proc.stdout}\n{proc.stderr}")
    return wall


def _one_at_a_time(notebooks: list[Path], out: Path) -> tuple[list[float], list[float]]:
    """Each notebook through both runners in one process, alternating, one kernel at a time.

    Returns per-run (total seconds, seconds beyond the cells) for nbdeploy's
    ``run_notebook`` and for ``papermill.execute_notebook``.
    """
    import papermill

    from nbdeploy.validate.runner import run_notebook
    from nbdeploy.validate.spares import spare_kernels

    ours: list[tuple[float, float]] = []
    theirs: list[tuple[float, float]] = []
    with spare_kernels():  # as in `nbdeploy validate`: the next kernel starts during a run
        for i, nb in enumerate(notebooks):
            seed = int(nb.stem.split("_")[1])
            result = run_notebook(nb, parameters={"seed": seed}, output_path=out / f"n_{nb.name}",
                                  next_spare=i < len(notebooks) - 1)
            if not result.ok:
                raise RuntimeError(f"{nb.name}: {result.reason}")
            ours.append((result.duration_s,
                         result.duration_s - _cell_seconds(Path(result.output_path))))
            theirs.append(_papermill_once(papermill, nb, seed, out))
    return ours, theirs


def _papermill_once(papermill: Any, nb: Path, seed: int, out: Path) -> tuple[float, float]:
    """One papermill.execute_notebook run: (total seconds, seconds beyond the cells)."""
    t0 = time.perf_counter()
    papermill.execute_notebook(
        str(nb), str(out / f"p_{nb.name}"), parameters={"seed": seed},
        progress_bar=False, request_save_on_cell_execute=False,
    )
    took = time.perf_counter() - t0
    return took, took - _cell_seconds(out / f"p_{nb.name}")


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def run() -> list[dict]:
    """Measure every contender in this run and return the benchmark rows."""
    work = Path(tempfile.mkdtemp(prefix="bench-validate-"))
    try:
        notebooks = _notebooks(work)
        _papermill_one_by_one(notebooks[:1], work / "warm")  # warm caches for all alike
        cli_wall = _papermill_one_by_one(notebooks, work / "papermill")
        nbd_wall = _nbdeploy_batch(notebooks, work / "nbdeploy")
        ours, theirs = _one_at_a_time(notebooks, work / "serial")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lib_wall = sum(t for t, _ in theirs)
    over_ours, over_theirs = _mean([o for _, o in ours]), _mean([o for _, o in theirs])
    figure = f"{nbd_wall:.1f} s (nbdeploy validate --parallel {PARALLEL})"
    return [
        {
            "benchmark": f"validate {N_NOTEBOOKS} notebooks, wall time",
            "figure": figure,
            "baseline": f"{cli_wall:.1f} s (papermill command, one after another)",
            "ratio": round(cli_wall / nbd_wall, 2),
            "target": ">= 1.7x faster",
            "met": cli_wall / nbd_wall >= 1.7,
        },
        {
            "benchmark": f"validate {N_NOTEBOOKS} notebooks, wall time, no interpreter starts",
            "figure": figure,
            "baseline": f"{lib_wall:.1f} s (papermill.execute_notebook, one after another "
            "in one process)",
            "ratio": round(lib_wall / nbd_wall, 2),
            "target": "(for information: parallel kernels alone)",
            "met": None,
        },
        {
            "benchmark": "time per notebook beyond its cells (kernel start included)",
            "figure": f"{over_ours:.2f} s (nbdeploy run_notebook, forked kernels)",
            "baseline": f"{over_theirs:.2f} s (papermill.execute_notebook, same process)",
            "ratio": round(over_ours / over_theirs, 2),
            "target": "< 0.3 s per notebook",
            "met": over_ours < 0.3,
        },
    ]


def main() -> None:
    for row in run():
        print(json.dumps(row))


if __name__ == "__main__":
    main()
