"""A self-contained HTML page summarising a validation batch (inline CSS, no scripts)."""

from __future__ import annotations

import datetime as _dt
import os
from html import escape
from pathlib import Path
from typing import Any

from nbdeploy.validate.batch import BatchResult, format_params
from nbdeploy.validate.runner import RunResult

__all__ = ["render_html_report", "write_html_report"]

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem;color:#1f2328}
h1{font-size:1.4rem;margin:0 0 .3rem}
.sub{color:#59636e;margin-bottom:1.2rem}
.cards{display:flex;gap:.8rem;margin-bottom:1.2rem}
.card{border:1px solid #d1d9e0;border-radius:8px;padding:.6rem 1rem;min-width:6rem}
.card b{display:block;font-size:1.5rem}
table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid #d1d9e0;padding:.45rem .6rem;text-align:left;vertical-align:top}
th{background:#f6f8fa;font-weight:600}
.badge{display:inline-block;border-radius:1em;padding:.05rem .6rem;font-weight:600;color:#fff}
.passed{background:#1a7f37}.failed{background:#cf222e}.error{background:#bc4c00}
.verdict-ok{color:#1a7f37}.verdict-bad{color:#cf222e}
code,.metrics{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12.5px}
.reason{color:#cf222e;max-width:40rem;word-break:break-word}
.warn{color:#9a6700;font-size:12.5px}
td:first-child,td:nth-child(5){white-space:nowrap}
"""


def _common_params(results: list[RunResult], grid_keys: list[str]) -> dict[str, Any]:
    """Parameters with the same value in every run (shown once, above the table)."""
    if not results:
        return {}
    first = results[0].parameters
    return {
        k: v
        for k, v in first.items()
        if k not in grid_keys and all(r.parameters.get(k, object()) == v for r in results)
    }


def _link(target: str, base: Path, label: str) -> str:
    """A relative link from the report's folder to ``target``."""
    href = Path(os.path.relpath(Path(target).resolve(), base.resolve())).as_posix()
    return f'<a href="{escape(href, quote=True)}">{escape(label)}</a>'


def _metrics(metrics: dict[str, Any]) -> str:
    if not metrics:
        return "&ndash;"
    return "<br>".join(
        f"{escape(str(k))} = {escape(f'{v:.4g}' if isinstance(v, float) else str(v))}"
        for k, v in metrics.items()
    )


def _row(r: RunResult, base: Path, common: dict[str, Any]) -> str:
    varying = {k: v for k, v in r.parameters.items() if k not in common}
    notebook = escape(Path(r.notebook).name)
    if Path(r.output_path).is_file():
        notebook = _link(r.output_path, base, Path(r.notebook).name)
    log = Path(r.output_path).with_suffix(".kernel.log")
    extra = f" &middot; {_link(str(log), base, 'kernel log')}" if log.is_file() else ""
    notes = "".join(f'<div class="warn">&#9888; {escape(w)}</div>' for w in r.warnings)
    reason = f'<div class="reason">{escape(r.reason)}</div>' if r.reason else ""
    return (
        "<tr>"
        f"<td>{notebook}{extra}</td>"
        f"<td><code>{escape(format_params(varying)) or '&ndash;'}</code></td>"
        f'<td><span class="badge {r.status}">{r.status}</span></td>'
        f'<td class="metrics">{_metrics(r.metrics)}</td>'
        f"<td>{r.duration_s:.1f}&nbsp;s</td>"
        f"<td>{reason}{notes}</td>"
        "</tr>"
    )


def render_html_report(result: BatchResult, base: Path, title: str = "Validation report") -> str:
    """The report as an HTML string; links are relative to the folder ``base``."""
    counts = result.counts
    common = _common_params(result.results, result.grid_keys)
    verdict = (
        '<span class="verdict-ok">all runs passed</span>'
        if result.ok
        else '<span class="verdict-bad">validation failed</span>'
    )
    when = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    cards = "".join(
        f'<div class="card">{label}<b>{value}</b></div>'
        for label, value in (
            ("runs", len(result.results)),
            ("passed", counts["passed"]),
            ("failed", counts["failed"]),
            ("errors", counts["error"]),
            ("wall time", f"{result.duration_s:.1f} s"),
        )
    )
    shared = (
        f"<p>Parameters of every run: <code>{escape(format_params(common))}</code></p>"
        if common
        else ""
    )
    rows = "\n".join(_row(r, base, common) for r in result.results)
    unmet = "".join(
        f'<p class="reason">requirement not met: {escape(why)}</p>' for why in result.unmet
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title><style>{_CSS}</style></head>
<body>
<h1>{escape(title)}: {verdict}</h1>
<div class="sub">generated {escape(when)} &middot; executed notebooks in
<code>{escape(result.out_dir)}</code></div>
<div class="cards">{cards}</div>
{shared}{unmet}
<table>
<thead><tr><th>notebook</th><th>parameters</th><th>status</th><th>metrics</th>
<th>time</th><th>reason</th></tr></thead>
<tbody>
{rows}
</tbody></table>
</body></html>
"""


def write_html_report(result: BatchResult, path: Path, title: str = "Validation report") -> Path:
    """Write the batch's HTML report to ``path`` and return it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html_report(result, path.parent, title), encoding="utf-8")
    return path
