"""The panel's tabs: Overview, Validation, Explain, Versions, Monitor."""

from __future__ import annotations

import html
import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ipywidgets as W

from nbdeploy.notebook import snippets

if TYPE_CHECKING:
    from nbdeploy.notebook.panel import DeploymentPanel


def _error(text: str) -> str:
    return f"<span style='color:#dc3545'>{html.escape(text)}</span>"


def _png_widget() -> W.Image:
    return W.Image(format="png", layout=W.Layout(max_width="480px"))


class OverviewTab:
    """Endpoint, schema, pins, client snippets and a Try-it form."""

    def __init__(self, panel: DeploymentPanel) -> None:
        self.panel = panel
        self.info = W.HTML("<i>The endpoint, schema and pinned packages appear here once built.</i>")
        self.curl = W.Textarea(layout=W.Layout(width="100%", height="80px"))
        self.client = W.Textarea(layout=W.Layout(width="100%", height="110px"))
        self.row = W.Textarea(layout=W.Layout(width="100%", height="90px"),
                              placeholder='{"column": value, ...}')
        self.row.add_class("nbdeploy-row")
        self.try_btn = W.Button(description="Try it", icon="paper-plane", button_style="primary")
        self.try_btn.add_class("nbdeploy-try")
        self.answer = W.HTML()
        self.answer.add_class("nbdeploy-answer")
        self.try_btn.on_click(lambda _: self.send())
        self.widget = W.VBox([
            self.info,
            W.HTML("<b>curl</b>"), self.curl,
            W.HTML("<b>Python</b>"), self.client,
            W.HTML("<b>Try it</b> — edit the row and send it to the live endpoint"),
            self.row, W.HBox([self.try_btn]), self.answer,
        ])
        self.url: str | None = None

    def refresh(self, summary: dict[str, Any]) -> None:
        from nbdeploy import api
        from nbdeploy.registry import Registry

        row = Registry().version(summary["name"], summary["version"])
        self.url = summary["endpoint"] if summary["status"] == "serving" else None
        schema_rows = [[c["name"], c["dtype"], "yes" if c["nullable"] else "no",
                        ", ".join(map(str, (c.get("categories") or [])[:6]))]
                       for c in row["schema"]["columns"]]
        pins = " ".join(f"{k}=={v}" for k, v in sorted(row["pins"].items()))
        endpoint = (f"<a href='{self.url}/' target='_blank' title='Swagger UI'><code>{self.url}</code></a>"
                    if self.url
                    else f"<i>not serving ({summary['status']})</i>")
        self.info.value = (
            f"<div><b>Endpoint</b>: {endpoint}&nbsp; <b>framework</b>: {row['framework']} "
            f"({row['task']})&nbsp; <b>bento</b>: <code>{row['bento_tag']}</code></div>"
            f"<details{' open' if len(schema_rows) <= 8 else ''}><summary><b>Input schema</b> "
            f"({len(schema_rows)} columns — click to {'hide' if len(schema_rows) <= 8 else 'show'})</summary>"
            + snippets.table_html(["column", "dtype", "NaN allowed", "allowed values"], schema_rows)
            + f"</details><div><b>Pinned</b> (python {row['python_version']}): "
            f"<code style='font-size:11px'>{html.escape(pins)}</code></div>"
        )
        try:
            reference = api.load_reference(summary["name"], summary["version"])
        except Exception:
            reference = None
        example = snippets.example_row(row["schema"], reference)
        base = self.url or summary["endpoint"] or "http://127.0.0.1:PORT"
        self.curl.value = snippets.curl_snippet(base, example)
        self.client.value = snippets.python_snippet(base, example)
        if not self.row.value:
            self.row.value = json.dumps(example, indent=1)

    def send(self) -> None:
        """POST the edited row to /predict and show the answer (or the 4xx error)."""
        import httpx

        if not self.url:
            self.answer.value = "<span style='color:#dc3545'>Not serving: click Start first.</span>"
            return
        try:
            row = json.loads(self.row.value)
        except json.JSONDecodeError as exc:
            self.answer.value = _error(f"The row is not valid JSON: {exc}")
            return
        rows = row if isinstance(row, list) else [row]
        try:
            resp = httpx.post(f"{self.url}/predict", json={"rows": rows}, timeout=30)
        except httpx.HTTPError as exc:
            self.answer.value = _error(f"Request failed: {exc}")
            return
        color = "#198754" if resp.status_code == 200 else "#dc3545"
        self.answer.value = (
            f"<div><span style='color:{color};font-weight:600'>HTTP {resp.status_code}</span>"
            f"{snippets.pre(json.dumps(resp.json(), indent=1) if resp.content else '')}</div>"
        )


class ValidationTab:
    """Validation runs of the version: notebooks, metrics, pass/fail, executed notebook paths."""

    def __init__(self, panel: DeploymentPanel) -> None:
        self.panel = panel
        self.body = W.HTML("<i>Validation runs appear here when you deploy with --validate NOTEBOOK.</i>")
        self.widget = W.VBox([self.body])

    def refresh(self, summary: dict[str, Any]) -> None:
        from nbdeploy.registry import Registry

        runs = Registry().validation_runs(summary["name"], summary["version"])
        if not runs:
            return
        rows = []
        for r in runs:
            metrics = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                for k, v in r["metrics"].items())
            ok = r["status"] == "passed"
            rows.append([Path(r["notebook"]).name, r["role"],
                         snippets.badge_html("serving" if ok else "failed").replace(
                             ">serving<", ">passed<").replace(">failed<", f">{r['status']}<"),
                         metrics or "—", r.get("reason") or "",
                         f"<code style='font-size:11px'>{html.escape(r['output_path'])}</code>"])
        self.body.value = snippets.table_html(
            ["notebook", "against", "result", "metrics", "reason", "executed notebook"], rows)


class ExplainTab:
    """SHAP bar, beeswarm and waterfall plots on the version's reference sample."""

    def __init__(self, panel: DeploymentPanel) -> None:
        self.panel = panel
        self.note = W.HTML("<i>Click Explain to compute SHAP explanations on the reference sample.</i>")
        self.button = W.Button(description="Explain", icon="lightbulb-o")
        self.button.on_click(lambda _: threading.Thread(target=self.compute, daemon=True).start())
        self.bar, self.beeswarm, self.waterfall = _png_widget(), _png_widget(), _png_widget()
        self.widget = W.VBox([W.HBox([self.button, self.note]),
                              W.HBox([self.bar, self.beeswarm]), self.waterfall])

    def compute(self, rows: int = 200) -> None:
        """Explain the reference sample of the panel's version and draw the plots."""
        try:
            from nbdeploy.explanations import explain

            ref = f"{self.panel.name}:{self.panel.version}" if self.panel.version else self.panel.name
            self.note.value = "<i>computing SHAP values…</i>"
            from nbdeploy import api

            model, reference = api.load_model(ref)
            result = explain(model, reference.head(rows), background=reference, progress=False)
            self.bar.value = result.to_png(result.plot_bar())
            self.beeswarm.value = result.to_png(result.plot_beeswarm())
            self.waterfall.value = result.to_png(result.plot_waterfall(0))
            n = len(reference.head(rows))
            self.note.value = f"<i>{n} reference rows, {result.explainer} explainer</i>"
        except Exception as exc:
            self.note.value = _error(f"Could not explain: {exc}")


class VersionsTab:
    """History of versions with promote and rollback."""

    def __init__(self, panel: DeploymentPanel) -> None:
        self.panel = panel
        self.table = W.HTML()
        self.choice = W.Dropdown(description="Version", options=[], layout=W.Layout(width="180px"))
        self.promote_btn = W.Button(description="Promote", icon="arrow-up")
        self.rollback_btn = W.Button(description="Rollback", icon="undo", button_style="warning")
        self.promote_btn.on_click(lambda _: self.panel._run(self._promote))
        self.rollback_btn.on_click(lambda _: self.panel._run(self._rollback))
        self.widget = W.VBox([self.table, W.HBox([self.choice, self.promote_btn, self.rollback_btn])])

    def refresh(self, summary: dict[str, Any]) -> None:
        from nbdeploy.cli import when
        from nbdeploy.registry import Registry

        versions = Registry().versions(summary["name"])
        serving = summary["serving_version"]
        rows = [[f"v{v['version']}" + (" ◀ serving" if v["version"] == serving else ""),
                 snippets.badge_html(v["status"]), v["framework"], when(v["created_at"]), v["created_by"],
                 Path((v.get("lineage") or {}).get("notebook") or "—").name,
                 snippets.reproduce_cell(v.get("lineage")), v.get("reason") or ""]
                for v in reversed(versions)]
        self.table.value = snippets.table_html(
            ["version", "state", "framework", "created", "by", "notebook", "reproduced", "reason"], rows)
        self.choice.options = [(f"v{v['version']} ({v['status']})", v["version"]) for v in reversed(versions)]
        self.choice.value = serving or versions[-1]["version"]

    def _promote(self) -> None:
        from nbdeploy import api

        dep = api.promote(self.panel.name, self.choice.value, progress=self.panel.on_progress)
        self.panel.version = dep.version

    def _rollback(self) -> None:
        from nbdeploy import api

        dep = api.rollback(self.panel.name, progress=self.panel.on_progress)
        self.panel.version = dep.version


class MonitorTab:
    """Request rate, errors, latency and drift of recent traffic."""

    def __init__(self, panel: DeploymentPanel) -> None:
        self.panel = panel
        self.body = W.HTML("<i>Click Refresh to read KPIs and drift from the prediction log.</i>")
        self.button = W.Button(description="Refresh", icon="refresh")
        self.plot = _png_widget()
        self.button.on_click(lambda _: self.compute())
        self.widget = W.VBox([self.button, self.body, self.plot])

    def compute(self) -> None:
        """KPIs per version and a drift verdict against the reference sample."""
        try:
            from nbdeploy import monitoring

            report = monitoring.report(self.panel.name)
        except Exception as exc:
            self.body.value = _error(str(exc))
            return
        self.body.value = report["html"]
        if report.get("png"):
            self.plot.value = report["png"]
