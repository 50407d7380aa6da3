"""Run validation notebooks over a grid of parameters, several kernels at a time.

Each run is one papermill kernel (a separate process), so a thread per run is enough
to keep ``parallel`` kernels busy at once.
"""

from __future__ import annotations

import itertools
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbdeploy.validate import fastkernel
from nbdeploy.validate.requirements import (
    Requirement,
    Requirements,
    check,
    parse_requirements,
)
from nbdeploy.validate.runner import RunResult, run_notebook
from nbdeploy.validate.spares import spare_kernels

__all__ = [
    "BatchResult",
    "expand_grid",
    "format_params",
    "parse_grid",
    "parse_param",
    "parse_value",
    "run_batch",
]

Progress = Callable[[int, int, RunResult], None]

_INT = re.compile(r"[-+]?\d+")
_FLOAT = re.compile(r"[-+]?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?")


def parse_value(text: str) -> Any:
    """Type a CLI value: ints, floats, true/false, null/none, quoted or bare strings."""
    raw = text.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return raw[1:-1]
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "none", "~"):
        return None
    if _INT.fullmatch(raw):
        return int(raw)
    if _FLOAT.fullmatch(raw):
        return float(raw)
    return raw


def _split(item: str, option: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key.isidentifier():
        raise ValueError(f"{option} expects key=value with a Python name as key, got {item!r}")
    return key, value


def parse_param(item: str) -> tuple[str, Any]:
    """Parse one ``-p key=value`` into ``(key, typed value)``."""
    key, value = _split(item, "-p")
    return key, parse_value(value)


def parse_grid(item: str) -> tuple[str, list[Any]]:
    """Parse one ``--grid key=v1,v2`` into ``(key, [typed values])``."""
    key, value = _split(item, "--grid")
    values = [parse_value(v) for v in value.split(",") if v.strip()]
    if not values:
        raise ValueError(f"--grid {key}= needs at least one value, e.g. --grid {key}=0.1,0.2")
    return key, values


def expand_grid(params: dict[str, Any], grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, each merged over ``params`` (grid order kept)."""
    both = sorted(set(params) & set(grid))
    if both:
        raise ValueError(f"{', '.join(both)} is both a fixed parameter and a grid axis: pick one")
    for key, values in grid.items():
        if not isinstance(values, (list, tuple)) or not values:
            raise ValueError(f"grid axis {key!r} needs a non-empty list of values")
    keys = list(grid)
    return [
        {**params, **dict(zip(keys, combo, strict=True))}
        for combo in itertools.product(*(grid[k] for k in keys))
    ]


def format_params(params: dict[str, Any]) -> str:
    """``alpha=0.1, depth=3`` for tables and progress lines."""
    return ", ".join(f"{k}={v}" for k, v in params.items())


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "-", text).strip("-")[:80]


@dataclass
class BatchResult:
    """All runs of a batch, in submission order (notebook-major, then grid order)."""

    results: list[RunResult]
    out_dir: str
    grid_keys: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    unmet: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every run passed and every requirement was met (an empty batch is not)."""
        return bool(self.results) and all(r.ok for r in self.results) and not self.unmet

    @property
    def counts(self) -> dict[str, int]:
        """How many runs ended in each status."""
        out = {"passed": 0, "failed": 0, "error": 0}
        for r in self.results:
            out[r.status] += 1
        return out

    def summary_table(self, max_metrics: int = 4) -> str:
        """An aligned text table: notebook, params, status, key metrics, duration, reason."""
        header = ["notebook", "params", "status", "metrics", "time", "reason"]
        rows = [header]
        for r in self.results:
            shown = {k: r.parameters.get(k) for k in self.grid_keys if k in r.parameters}
            metrics = ", ".join(
                f"{k}={_fmt(v)}" for k, v in list(r.metrics.items())[:max_metrics]
            )
            if len(r.metrics) > max_metrics:
                metrics += f" (+{len(r.metrics) - max_metrics})"
            reason = (r.reason or "")[:70] + ("..." if r.reason and len(r.reason) > 70 else "")
            rows.append(
                [
                    Path(r.notebook).name,
                    format_params(shown) or "-",
                    r.status.upper() if not r.ok else r.status,
                    metrics or "-",
                    f"{r.duration_s:.1f}s",
                    reason,
                ]
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
        lines = []
        for n, row in enumerate(rows):
            cells = [c.ljust(w) for c, w in zip(row, widths, strict=False)] + [row[-1]]
            lines.append("  ".join(cells).rstrip())
            if n == 0:
                lines.append("  ".join("-" * w for w in widths) + "  ------")
        c = self.counts
        lines.append(
            f"{len(self.results)} runs: {c['passed']} passed, {c['failed']} failed, "
            f"{c['error']} errors in {self.duration_s:.1f}s"
        )
        lines.extend(f"requirement not met: {why}" for why in self.unmet)
        return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _stderr_progress(done: int, total: int, result: RunResult) -> None:
    """The default progress: one line per finished run on stderr."""
    params = format_params(result.parameters)
    line = f"[{done}/{total}] {result.status} {Path(result.notebook).name}"
    if params:
        line += f" ({params[:60]})"
    line += f" {result.duration_s:.1f}s"
    if result.reason:
        line += f": {result.reason[:100]}"
    print(line, file=sys.stderr, flush=True)


def _output_names(
    notebooks: list[Path], combos: list[dict[str, Any]], keys: list[str]
) -> list[str]:
    """A distinct, readable output file name per (notebook, combination)."""
    names: list[str] = []
    seen: set[str] = set()
    for nb in notebooks:
        for combo in combos:
            suffix = "__".join(_slug(f"{k}={combo[k]}") for k in keys)
            base = nb.stem + (f"__{suffix}" if suffix else "")
            name, n = base, 1
            while name in seen:
                n += 1
                name = f"{base}-{n}"
            seen.add(name)
            names.append(name + ".ipynb")
    return names


def _apply(result: RunResult, requirements: list[Requirement]) -> None:
    """Fail a passed run whose recorded metrics miss a requirement on them."""
    mine = [req for req in requirements if req.metric in result.metrics]
    unmet = check(result.metrics, mine) if result.ok and mine else []
    if unmet:
        result.status = "failed"
        result.reason = "requirement not met: " + "; ".join(unmet)


def run_batch(
    notebooks: Iterable[str | Path],
    *,
    params: dict[str, Any] | None = None,
    grid: dict[str, list[Any]] | None = None,
    parallel: int = 1,
    timeout: float | None = 600,
    out_dir: Path,
    progress: Progress | bool = True,
    kernel_name: str | None = None,
    required: Iterable[str] = (),
    require: Requirements = (),
) -> BatchResult:
    """Run every notebook with every grid combination, ``parallel`` kernels at a time.

    ``require`` (e.g. ``["auc>=0.95"]``) applies to each run that recorded the metric; a
    metric no run recorded at all is listed in ``BatchResult.unmet``.
    """
    requirements = parse_requirements(require)
    started = time.perf_counter()
    notebooks = [Path(nb) for nb in notebooks]
    grid = dict(grid or {})
    combos = expand_grid(dict(params or {}), grid)
    if parallel < 1:
        raise ValueError(f"parallel must be at least 1, got {parallel}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = _output_names(notebooks, combos, list(grid))
    jobs = [(nb, combo) for nb in notebooks for combo in combos]
    fastkernel.warm()
    report: Progress | None = _stderr_progress if progress is True else (progress or None)
    required = list(required)
    lock = threading.Lock()
    finished = 0
    workers = min(parallel, max(len(jobs), 1))

    def one(index: int) -> RunResult:
        nonlocal finished
        nb, combo = jobs[index]
        result = run_notebook(
            nb,
            parameters=combo,
            output_path=out / names[index],
            timeout=timeout,
            kernel_name=kernel_name,
            required=required,
            next_spare=index + workers < len(jobs),  # this thread likely runs another
        )
        _apply(result, requirements)
        with lock:
            finished += 1
            if report is not None:
                report(finished, len(jobs), result)
        return result

    pool = ThreadPoolExecutor(max_workers=workers)
    with spare_kernels():
        try:
            results = list(pool.map(one, range(len(jobs))))
        except BaseException:  # Ctrl-C: start nothing new; running kernels end at their timeout
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
    recorded: dict[str, Any] = {}
    for r in results:
        recorded.update(r.metrics)
    unmet = check(recorded, [q for q in requirements if q.metric not in recorded])
    duration = round(time.perf_counter() - started, 3)
    return BatchResult(results, str(out), list(grid), duration, unmet)
