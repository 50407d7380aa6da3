"""Monitoring of a deployment by name: KPIs, drift, live quality, feedback and alerts.

Glue between the registry (reference samples, tasks, alert rules) and nbdeploy.monitor
(the prediction log written by the stable endpoint, drift tests, metrics)."""

from __future__ import annotations

import html
import time
from typing import Any

from nbdeploy.monitor import (
    Alert,
    DriftReport,
    FeedbackStore,
    PredictionLog,
    drift_report,
    evaluate,
    live_metrics,
    parse_rules,
)
from nbdeploy.monitor import compare_versions as _compare
from nbdeploy.monitor.kpis import kpis as _kpis  # `nbdeploy.monitor.kpis` may be the module
from nbdeploy.registry import Registry

WINDOWS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_window(text: str | float | None) -> float | None:
    """'15m', '24h', '7d' or seconds → seconds (None: everything)."""
    if text is None or text == "":
        return None
    if isinstance(text, (int, float)):
        return float(text)
    unit = text[-1].lower()
    try:
        return float(text[:-1]) * WINDOWS[unit] if unit in WINDOWS else float(text)
    except ValueError:
        raise ValueError(f"cannot read the window {text!r}: write e.g. 30m, 24h or 7d") from None


def predlog(name: str) -> PredictionLog:
    """The prediction log of a deployment (sensitive columns as set at deploy time)."""
    sensitive = Registry().settings(name).get("sensitive") or None
    return PredictionLog.for_deployment(name, sensitive=sensitive)


def feedback_store(name: str) -> FeedbackStore:
    """Where true labels sent to /feedback are kept."""
    return FeedbackStore(predlog(name).directory)  # the folder the stable endpoint writes to


def kpis(name: str, window: str | float | None = "1h") -> dict[int, dict[str, Any]]:
    """Request rate, error rate and latency percentiles per version."""
    seconds = parse_window(window)
    since = time.time() - seconds if seconds else None
    return _kpis(predlog(name).read(since=since), window=seconds)


def drift(name: str, version: int | None = None, window: str | float | None = "24h",
          **thresholds: Any) -> DriftReport:
    """Drift of recent traffic of a version against its reference sample."""
    from nbdeploy import api

    reg = Registry()
    row = reg.version(name, version)
    seconds = parse_window(window)
    since = time.time() - seconds if seconds else None
    reference = api.load_reference(name, row["version"])
    current = predlog(name).frame(since=since, version=row["version"], shadow=False)
    columns = [c for c in reference.columns if c in current.columns]
    cats = [c["name"] for c in row["schema"]["columns"] if c.get("categories")]
    return drift_report(reference[columns], current[columns] if columns else current,
                        categorical=cats, **thresholds)


def live(name: str, window: str | float | None = None,
         bucket: str | float = "1h") -> dict[str, Any]:
    """Live accuracy (classification) or error metrics (regression) per version from feedback,
    overall and per ``bucket`` of time."""
    row = Registry().version(name)
    task = "regression" if row["task"] == "regression" else "classification"
    step = parse_window(bucket)
    if not step or step <= 0:
        raise ValueError(f"bucket must be a positive duration such as 10m or 1h, got {bucket!r}")
    return live_metrics(predlog(name), feedback_store(name), task=task, window=parse_window(window),
                        bucket=step)


def compare(name: str, a: int, b: int, window: str | float | None = None,
            alpha: float = 0.05) -> dict[str, Any]:
    """A/B comparison of two versions on live feedback (significance test at ``alpha``)."""
    row = Registry().version(name)
    task = "regression" if row["task"] == "regression" else "classification"
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    return _compare(predlog(name), feedback_store(name), task=task, a=a, b=b,
                    window=parse_window(window), alpha=alpha)


def record_feedback(name: str, request_id: str, truth: Any, row: int = 0) -> dict[str, Any]:
    """Store the true value for a prediction (FeedbackError for an unknown request id)."""
    log = predlog(name)
    return feedback_store(name).add(request_id, truth, row=row, predlog=log)


def set_alerts(name: str, rules: list[str]) -> list[str]:
    """Store alert rules (e.g. 'accuracy<0.9', 'error_rate>0.05', 'drift') for a deployment."""
    parsed = parse_rules(rules)  # raises a clear error for an unreadable rule
    reg = Registry()
    stored = [str(r) for r in rules]
    reg.set_setting(name, "alerts", stored)
    reg.log_event("alerts", name=name, detail={"rules": stored})
    return [str(r) for r in parsed]


def alerts(name: str, window: str | float | None = "1h") -> list[Alert]:
    """Alerts firing now for a deployment's rules."""
    rules = Registry().settings(name).get("alerts") or []
    if not rules:
        return []
    report = None
    if any("drift" in r for r in rules):
        try:
            report = drift(name, window="24h")
        except Exception:
            report = None
    try:
        quality = live(name)
    except Exception:
        quality = None
    return evaluate(parse_rules(rules), kpis=kpis(name, window), live=quality, drift=report)


def fmt(value: float | None, spec: str, unit: str = "") -> str:
    """A number for a table, or a dash when it is not known yet (the rate of one request)."""
    return "—" if value is None else f"{value:{spec}}{unit}"


def quality_rows(quality: dict[str, Any]) -> list[tuple[str, ...]]:
    """(version, labelled rows, metric columns...) per version of ``live()`` output."""
    rows = []
    for v, q in sorted(quality.get("versions", {}).items()):
        if quality.get("task") == "regression":
            rows.append((f"v{v}", str(q["n"]), fmt(q["mae"], ".4g"), fmt(q["rmse"], ".4g"),
                         fmt(q["bias"], "+.4g")))
        else:
            rows.append((f"v{v}", str(q["n"]), str(q["correct"]), fmt(q["accuracy"], ".1%")))
    return rows


def quality_headers(task: str) -> tuple[str, ...]:
    """Column names matching ``quality_rows``."""
    if task == "regression":
        return ("version", "labelled", "MAE", "RMSE", "bias")
    return ("version", "labelled", "correct", "accuracy")


def _live_html(name: str) -> tuple[str, bytes | None]:
    """The Monitor tab's live-quality table and its accuracy-over-time plot (PNG)."""
    from nbdeploy.monitor.plots import fig_to_png, plot_accuracy

    quality = live(name)
    if not quality["versions"]:
        note = (f" ({quality['unmatched']} feedback entries match no logged prediction)"
                if quality["unmatched"] else "")
        return ("<b>Live quality</b>: <i>no feedback joined to predictions yet; POST "
                f"{{request_id, truth}} to the stable endpoint's /feedback</i>{note}"), None
    head = "".join(f"<th>{h}</th>" for h in quality_headers(quality["task"]))
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>"
                   for row in quality_rows(quality))
    return (f"<b>Live quality</b> (from feedback)<table><tr>{head}</tr>{body}</table>",
            fig_to_png(plot_accuracy(quality)))


def report(name: str) -> dict[str, Any]:
    """HTML and PNG plots for the panel's Monitor tab.

    ``png`` is the drift plot; ``accuracy_png`` the live accuracy (MAE) per version over time,
    also embedded in ``html`` so a viewer that shows only the HTML sees it."""
    import base64

    from nbdeploy import api
    from nbdeploy.monitor.plots import fig_to_png, plot_drift

    k = kpis(name, None)
    rows = "".join(
        f"<tr><td>v{v}</td><td>{d['requests']}</td><td>{fmt(d['rate'], '.2f', '/s')}</td>"
        f"<td>{fmt(d['error_rate'], '.1%')}</td><td>{fmt(d['p50_ms'], '.1f')}</td>"
        f"<td>{fmt(d['p99_ms'], '.1f')}</td></tr>"
        for v, d in sorted(k.items())
    ) or "<tr><td colspan=6><i>no traffic logged yet</i></td></tr>"
    parts = ["<b>Traffic</b><table><tr><th>version</th><th>requests</th><th>rate</th><th>errors</th>"
             f"<th>p50 ms</th><th>p99 ms</th></tr>{rows}</table>"]
    png = None
    try:
        rep = drift(name)
        parts.append(f"<b>Drift</b>: {html.escape(rep.verdict)}"
                     + (f" in {', '.join(map(html.escape, rep.drifted))}" if rep.drifted else ""))
        row = Registry().version(name)
        current = predlog(name).frame(version=row["version"], shadow=False)
        if len(current):
            png = fig_to_png(plot_drift(rep, api.load_reference(name, row["version"]), current))
    except Exception as exc:
        parts.append(f"<b>Drift</b>: <i>{html.escape(str(exc))}</i>")
    accuracy_png = None
    try:
        text, accuracy_png = _live_html(name)
        parts.append(text)
        if accuracy_png:
            data = base64.b64encode(accuracy_png).decode()
            parts.append(f'<img alt="live quality per version over time" '
                         f'src="data:image/png;base64,{data}" style="max-width:100%">')
    except Exception as exc:
        parts.append(f"<b>Live quality</b>: <i>{html.escape(str(exc))}</i>")
    fired = alerts(name)
    if fired:
        items = "".join(f"<li>{html.escape(a.message)}</li>" for a in fired)
        parts.append(f"<b>Alerts</b><ul>{items}</ul>")
    return {"html": "<br>".join(parts), "png": png, "accuracy_png": accuracy_png}
