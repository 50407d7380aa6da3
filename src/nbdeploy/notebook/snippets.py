"""Ready-to-copy client snippets and small HTML renderers for the panel."""

from __future__ import annotations

import html
import json
from typing import Any


def example_row(schema: dict[str, Any], reference: Any = None) -> dict[str, Any]:
    """One plausible input row: the first reference row, else a value per column type."""
    if reference is not None and len(reference):
        from nbdeploy.package.runtime.frames import to_json

        return {str(k): to_json(v) for k, v in reference.iloc[0].to_dict().items()}
    defaults = {"float": 0.0, "int": 0, "bool": False, "str": "", "datetime": "2024-01-01T00:00:00"}
    row = {}
    for col in schema["columns"]:
        cats = col.get("categories")
        row[col["name"]] = cats[0] if cats else defaults.get(col["kind"], None)
    return row


def curl_snippet(url: str, row: dict[str, Any], route: str = "predict") -> str:
    """A curl command posting one row."""
    body = json.dumps({"rows": [row]})
    return (
        f"curl -s -X POST {url}/{route} \\\n  -H 'Content-Type: application/json' \\\n"
        f"  -d '{body}'"
    )


def python_snippet(url: str, row: dict[str, Any]) -> str:
    """A Python client using httpx (or requests) for one row."""
    return (
        "import httpx\n\n"
        f"rows = [{json.dumps(row)}]\n"
        f'resp = httpx.post("{url}/predict", json={{"rows": rows}})\n'
        "resp.raise_for_status()\n"
        "print(resp.json())"
    )


def table_html(headers: list[str], rows: list[list[Any]], *, empty: str = "nothing yet") -> str:
    """A compact HTML table (values escaped)."""
    if not rows:
        return f"<i style='color:#666'>{html.escape(empty)}</i>"
    head = "".join(f"<th style='text-align:left;padding:2px 8px'>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td style='padding:2px 8px'>{_cell(v)}</td>" for v in row) + "</tr>"
        for row in rows
    )
    return f"<table style='border-collapse:collapse;font-size:12px'><tr>{head}</tr>{body}</table>"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value) if value is not None else "—"
    return text if text.startswith("<") else html.escape(text)


BADGE_COLORS = {
    "capturing": "#6c757d", "building": "#0d6efd", "starting": "#0d6efd", "validating": "#6f42c1",
    "serving": "#198754", "ready": "#0dcaf0", "failed": "#dc3545", "rejected": "#dc3545",
    "down": "#dc3545", "stopped": "#6c757d", "interrupted": "#dc3545", "candidate": "#6f42c1",
}


def badge_html(status: str) -> str:
    """A colored status pill."""
    color = BADGE_COLORS.get(status, "#6c757d")
    return (
        f"<span class='nbdeploy-badge' style='background:{color};color:white;border-radius:10px;"
        f"padding:2px 10px;font-size:12px;font-weight:600'>{html.escape(status)}</span>"
    )


def pre(text: str) -> str:
    """Preformatted, escaped text."""
    return (
        "<pre style='background:#f6f8fa;padding:6px;border-radius:4px;font-size:12px;"
        f"white-space:pre-wrap;margin:2px 0'>{html.escape(text)}</pre>"
    )


def alert_badge_html(alerts: list[Any]) -> str:
    """A red pill counting firing alerts, their messages as its tooltip ('' when none fire)."""
    if not alerts:
        return ""
    tip = html.escape("\n".join(a.message for a in alerts), quote=True)
    color = "#dc3545" if any(a.severity == "critical" for a in alerts) else "#fd7e14"
    n = len(alerts)
    return (
        f"<span class='nbdeploy-alerts' title='{tip}' style='background:{color};color:white;"
        f"border-radius:10px;padding:2px 10px;font-size:12px;font-weight:600'>"
        f"⚠ {n} alert{'s' if n != 1 else ''} firing</span>"
    )


def reproduce_cell(lineage: dict[str, Any] | None) -> str:
    """The reproduce verdict recorded in a version's lineage, as a short colored label."""
    record = (lineage or {}).get("reproduce")
    if not record:
        return "—"
    status = str(record.get("status") or "?")
    color = "#198754" if status in ("exact", "within-tolerance") else "#dc3545"
    verdict = html.escape(str(record.get("verdict") or ""), quote=True)
    return f"<span style='color:{color};font-weight:600' title='{verdict}'>{html.escape(status)}</span>"
