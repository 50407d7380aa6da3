"""Run every benchmark module and write BENCHMARKS.md at the repository root (``make bench``).

Each ``bench/bench_*.py`` that exposes ``run() -> list[dict]`` runs in its own child
interpreter with NBDEPLOY_HOME / BENTOML_HOME in a fresh temp folder, so a crash, a hang or
leftover state in one benchmark cannot touch the others; a failing benchmark becomes a row
carrying its error.

Run: python -m bench.run_all [--out FILE] [deploy validate ...]
A subset (names given) prints its table and writes a report only when --out is given.
"""

from __future__ import annotations

import datetime as dt
import importlib
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
OUTPUT = ROOT / "BENCHMARKS.md"
PREFERRED = ["bench_deploy", "bench_validate", "bench_explain", "bench_router", "bench_notebook"]
COLUMNS = ["benchmark", "figure", "baseline", "ratio", "target", "met"]
MODULE_TIMEOUT = 30 * 60


def discover(selected: list[str] | None = None) -> list[str]:
    """Benchmark module names, the known ones first, then any other ``bench_*.py``."""
    present = sorted(p.stem for p in BENCH_DIR.glob("bench_*.py"))
    names = [m for m in PREFERRED if m in present] + [m for m in present if m not in PREFERRED]
    if selected:
        wanted = {s if s.startswith("bench_") else f"bench_{s}" for s in selected}
        names = [m for m in names if m in wanted]
    return names


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _ratio(value: object) -> str:
    if isinstance(value, int | float):
        return f"{value:.2f}x"
    return "—" if value in (None, "") else str(value)


def _met(row: dict) -> str:
    if row.get("error") and row.get("met") is not True:
        return "✗ (error)"
    met = row.get("met")
    return "✓" if met is True else "✗" if met is False else "—"


def markdown_table(rows: list[dict]) -> str:
    """One Markdown table: benchmark, figure, baseline, ratio, target, met."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        cells = [
            _cell(row.get("benchmark", "?")),
            _cell(row.get("figure", "—")),
            _cell(row.get("baseline", "—")),
            _ratio(row.get("ratio")),
            _cell(row.get("target", "—")),
            _met(row),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine() -> dict[str, str]:
    """CPU model, cores, memory, Python, BentoML version and the date."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor() or "unknown"
    memory = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    try:
        bentoml_version = importlib.metadata.version("bentoml")
    except importlib.metadata.PackageNotFoundError:
        bentoml_version = "not installed"
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": memory,
        "os": platform.platform(),
        "python": platform.python_version(),
        "bentoml": bentoml_version,
        "wrk": "yes (/usr/bin/wrk)" if Path("/usr/bin/wrk").exists() else "no (Python load generator)",
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _child(module: str, out: str) -> None:
    """In a fresh interpreter: isolated homes, import the module, run it, dump its rows."""
    home = Path(tempfile.mkdtemp(prefix=f"{module}-"))
    os.environ.update(
        NBDEPLOY_HOME=str(home), BENTOML_HOME=str(home / "bentoml"),
        NBDEPLOY_BENCH_HOME=str(home), BENTOML_DO_NOT_TRACK="true",
    )
    try:
        mod = importlib.import_module(f"bench.{module}")
        if not callable(getattr(mod, "run", None)):
            rows = []
        else:
            rows = list(mod.run())
        Path(out).write_text(json.dumps({"rows": rows, "doc": (mod.__doc__ or "").strip()}, default=str))
    finally:
        shutil.rmtree(home, ignore_errors=True)


def run_module(module: str) -> tuple[list[dict], str, float]:
    """Run one benchmark module in a child interpreter: (rows, docstring, seconds)."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
        out = tmp.name
    started = time.perf_counter()
    error = ""
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "bench.run_all", "--child", module, out],
            cwd=ROOT, timeout=MODULE_TIMEOUT, stderr=subprocess.PIPE, text=True,
        )
        if proc.returncode != 0:
            tail = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
            error = tail[-1] if tail else f"exit code {proc.returncode}"
            sys.stderr.write(proc.stderr[-4000:])
        data = json.loads(Path(out).read_text() or "{}") if not error else {}
    except subprocess.TimeoutExpired:
        error = f"timed out after {MODULE_TIMEOUT} s"
        data = {}
    except (OSError, json.JSONDecodeError) as exc:
        error = f"{type(exc).__name__}: {exc}"
        data = {}
    finally:
        Path(out).unlink(missing_ok=True)
    took = time.perf_counter() - started
    rows = data.get("rows", [])
    if error:
        rows = [{"benchmark": f"{module} (failed)", "figure": "—", "baseline": "—", "ratio": None,
                 "target": "—", "met": False, "error": error}]
    elif not rows:
        rows = [{"benchmark": f"{module} (no rows)", "met": None,
                 "note": "the module has no run() or returned no rows"}]
    return rows, data.get("doc", ""), took


def _summary(doc: str) -> str:
    """The first paragraph of a module docstring, on one line."""
    return " ".join(doc.split("\n\n", 1)[0].split()) if doc else ""


def write_report(results: list[tuple[str, list[dict], str, float]], command: str) -> str:
    """The text of BENCHMARKS.md."""
    info = machine()
    all_rows = [row for _, rows, _, _ in results for row in rows]
    met = sum(1 for r in all_rows if r.get("met") is True)
    graded = sum(1 for r in all_rows if r.get("met") in (True, False))
    lines = [
        "# Benchmarks",
        "",
        "Generated by `make bench`; every figure is measured against its named baseline in the same "
        "run on the same machine, so the ratios matter more than the absolute numbers.",
        "",
        f"- Machine: {info['cpu']}, {info['cores']} cores, {info['memory']} RAM ({info['os']})",
        f"- Python {info['python']}, BentoML {info['bentoml']}; wrk: {info['wrk']}",
        f"- Date: {info['date']}",
        f"- Command: `{command}`",
        f"- Targets met: {met} of {graded}",
        "",
        markdown_table(all_rows),
        "",
        "## Notes per module",
        "",
    ]
    for module, rows, doc, took in results:
        lines.append(f"### {module} ({took:.0f} s)")
        lines.append("")
        if _summary(doc):
            lines.append(_summary(doc))
            lines.append("")
        for row in rows:
            extra = row.get("error") or row.get("note")
            if extra:
                label = "error" if row.get("error") else "note"
                lines.append(f"- {row.get('benchmark', '?')} — {label}: {_cell(extra)}")
        lines.append(f"- run alone: `python -m bench.{module}`")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--child"]:
        _child(args[1], args[2])
        return 0
    out: Path | None = OUTPUT
    if "--out" in args:
        i = args.index("--out")
        out = Path(args[i + 1]).resolve()
        del args[i:i + 2]
    elif args:
        out = None
    modules = discover(args or None)
    if not modules:
        print(f"no benchmark modules match {args}", file=sys.stderr)
        return 1
    results = []
    for module in modules:
        print(f"== {module}", flush=True)
        rows, doc, took = run_module(module)
        results.append((module, rows, doc, took))
        print(markdown_table(rows), flush=True)
    command = " ".join(["python -m bench.run_all", *args]) + ("" if args else "   (make bench)")
    print()
    print(markdown_table([r for _, rows, _, _ in results for r in rows]))
    if out is not None:
        out.write_text(write_report(results, command))
        print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
