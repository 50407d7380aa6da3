"""The deployment panel: one ipywidgets view of a deployment, live while it deploys.

Stock widgets only, so it renders in JupyterLab and from a saved notebook's widget state.
It holds no state of its own: every refresh reads the registry."""

from __future__ import annotations

import html
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import ipywidgets as W

from nbdeploy.notebook import snippets, tabs

STAGES = ("capturing", "building", "starting", "validating", "serving")
TAB_TITLES = ("Overview", "Validation", "Explain", "Versions", "Monitor")
TAB_CLASSES = (tabs.OverviewTab, tabs.ValidationTab, tabs.ExplainTab, tabs.VersionsTab, tabs.MonitorTab)
TAB_HINTS = (
    "The endpoint, schema and client snippets appear here once built.",
    "Validation runs appear here when you deploy with --validate NOTEBOOK.",
    "SHAP explanations of the reference sample: open this tab after the deploy.",
    "Every version of this deployment, with promote and rollback.",
    "Traffic, latency, errors and drift of the serving version.",
)
TERMINAL = {"serving", "failed", "rejected", "stopped", "ready"}


class DeploymentPanel:
    """Header with status badge, stage progress, collapsible log, tabs and action buttons."""

    def __init__(self, name: str, *, redeploy: Callable[[], Any] | None = None) -> None:
        self.name = name
        self.version: int | None = None
        self.status = "capturing"
        self.alerts: list[Any] = []
        self.action: threading.Thread | None = None  # the latest button action, for scripts/tests
        self._redeploy = redeploy
        self._lock = threading.Lock()
        self.header = W.HTML()
        self.progress = W.IntProgress(value=0, min=0, max=len(STAGES), description="",
                                      layout=W.Layout(width="320px"))
        self.stage_label = W.HTML()
        self.log = W.Textarea(value="", layout=W.Layout(width="100%", height="140px"), disabled=True)
        self.log_box = W.Accordion(children=[self.log], selected_index=None)
        self.log_box.set_title(0, "Log")
        self.message = W.HTML()
        # Tabs are built when first opened, so %deploy hands control back quickly.
        self._tabs: dict[int, Any] = {}
        self._summary: dict[str, Any] | None = None
        placeholders = [W.HTML(f"<i>{hint}</i>") for hint in TAB_HINTS]
        self.tabs = W.Tab(children=placeholders, titles=TAB_TITLES)
        self.tabs.observe(lambda change: self._tab(change["new"]), names="selected_index")
        self._tab(0)
        self.deploy_btn = W.Button(description="Redeploy", icon="rocket", disabled=redeploy is None,
                                   tooltip="Capture the model variable again and deploy a new version")
        self.stop_btn = W.Button(description="Stop", icon="stop", button_style="warning")
        self.start_btn = W.Button(description="Start", icon="play")
        self.refresh_btn = W.Button(description="Refresh", icon="refresh")
        self.docs_link = W.HTML()
        self.deploy_btn.on_click(lambda _: self._run(self._do_redeploy))
        self.stop_btn.on_click(lambda _: self._run(self._do_stop))
        self.start_btn.on_click(lambda _: self._run(self._do_start))
        self.refresh_btn.on_click(lambda _: self.refresh())
        buttons = W.HBox([self.deploy_btn, self.stop_btn, self.start_btn, self.refresh_btn, self.docs_link])
        self.widget = W.VBox(
            [self.header, W.HBox([self.progress, self.stage_label]), self.message, buttons, self.tabs,
             self.log_box],
            layout=W.Layout(border="1px solid #ddd", padding="8px", width="100%"),
        )
        self.widget.add_class("nbdeploy-panel")
        self._render_header()

    def _tab(self, index: int | None) -> Any:
        """The tab object at ``index``, built (and filled) on first use."""
        if index is None:
            return None
        if index not in self._tabs:
            tab = TAB_CLASSES[index](self)
            self._tabs[index] = tab
            children = list(self.tabs.children)
            children[index] = tab.widget
            self.tabs.children = children
            if self._summary is not None and hasattr(tab, "refresh"):
                tab.refresh(self._summary)
        return self._tabs[index]

    overview = property(lambda self: self._tab(0))
    validation = property(lambda self: self._tab(1))
    explain = property(lambda self: self._tab(2))
    versions = property(lambda self: self._tab(3))
    monitor = property(lambda self: self._tab(4))

    # -- display ---------------------------------------------------------------------------
    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def _render_header(self) -> None:
        version = f" v{self.version}" if self.version else ""
        self.header.value = (
            f"<div style='display:flex;align-items:center;gap:10px'>"
            f"<span style='font-size:16px;font-weight:700'>{html.escape(self.name)}{version}</span>"
            f"{snippets.badge_html(self.status)}{snippets.alert_badge_html(self.alerts)}</div>"
        )

    # -- progress (called from the deploy thread) -------------------------------------------
    def on_progress(self, stage: str, message: str) -> None:
        """Progress callback for api.deploy: move the bar, append to the log."""
        with self._lock:
            if stage in STAGES:
                self.progress.value = STAGES.index(stage) + (1 if stage == "serving" else 0)
                self.progress.bar_style = "success" if stage == "serving" else "info"
            self.status = stage
            self.stage_label.value = f"<span style='font-size:12px'>{html.escape(message)}</span>"
            self.append_log(f"{stage}: {message}")
            self._render_header()

    def append_log(self, line: str) -> None:
        """Add one timestamped line to the collapsible log."""
        self.log.value += f"[{time.strftime('%H:%M:%S')}] {line}\n"

    def fail(self, exc: BaseException) -> None:
        """Show a failure with its reason and what to do next."""
        from nbdeploy.errors import NbdeployError

        self.status = "failed"
        self.progress.bar_style = "danger"
        reason = str(exc) if isinstance(exc, NbdeployError) else f"{type(exc).__name__}: {exc}"
        self.message.value = (
            "<div style='color:#dc3545'><b>Deploy failed:</b> " + html.escape(reason) + "<br>"
            "<span style='color:#555'>Fix the cause above and click <b>Redeploy</b> (or run the "
            "%deploy cell again); the previous version, if any, keeps serving.</span></div>"
        )
        self.append_log(f"failed: {reason}")
        self._render_header()

    def done(self, deployment: Any) -> None:
        """The deploy finished: show the final state of the version it made."""
        self.version = deployment.version
        self.refresh()

    # -- state -----------------------------------------------------------------------------
    def refresh(self) -> None:
        """Re-read the registry and redraw every part of the panel."""
        from nbdeploy import api
        from nbdeploy.errors import NotFoundError

        try:
            dep = api.get(f"{self.name}:{self.version}" if self.version else self.name)
            summary = dep.summary()
        except NotFoundError as exc:
            self.message.value = f"<i>{html.escape(str(exc))}</i>"
            return
        self.version = summary["version"]
        self.status = summary["status"]
        if self.status == "stopped" and summary["state"] == "ready" and not summary.get("port"):
            self.status = "ready"  # built and registered with --no-serve, never started
        self.alerts = firing_alerts(self.name)
        if summary["state"] in ("rejected", "failed", "interrupted"):
            self.status = summary["state"]
            self.progress.bar_style = "danger"
            self.message.value = (
                f"<div style='color:#dc3545'><b>v{self.version} {summary['state']}:</b> "
                f"{html.escape(summary.get('reason') or '')}<br><span style='color:#555'>"
                f"{next_step(summary['state'])} {untouched(summary['serving_version'])}</span></div>"
            )
        elif self.status == "serving":
            self.progress.value = len(STAGES)
            self.progress.bar_style = "success"
            self.message.value = ""
        url = summary.get("endpoint")
        self.docs_link.value = (
            f"<a href='{url}/' target='_blank' style='margin-left:8px' title='Swagger UI of the service'>"
            "Open docs ↗</a>" if url else ""
        )
        self._render_header()
        self._summary = summary
        for tab in list(self._tabs.values()):
            if hasattr(tab, "refresh"):
                tab.refresh(summary)

    # -- actions ---------------------------------------------------------------------------
    def _run(self, action: Callable[[], None]) -> None:
        def target() -> None:
            try:
                action()
            except Exception as exc:  # shown in the panel, never a traceback
                self.fail(exc)
            else:
                self.refresh()

        self.action = threading.Thread(target=target, daemon=True, name=f"nbdeploy-{self.name}")
        self.action.start()

    def _do_redeploy(self) -> None:
        self.message.value = ""
        self.progress.value = 0
        dep = self._redeploy() if self._redeploy else None
        if dep is not None:
            self.version = dep.version

    def _do_stop(self) -> None:
        from nbdeploy import api

        api.stop(self.name, self.version)
        self.append_log(f"stopped v{self.version}")

    def _do_start(self) -> None:
        from nbdeploy import api

        dep = api.start(self.name, self.version, progress=self.on_progress)
        self.version = dep.version


NEXT_STEPS = {
    "rejected": "See the Validation tab for the runs, metrics and executed notebooks; fix the model "
                "or the validation notebook and click <b>Redeploy</b> (or run the %deploy cell again).",
    "failed": "Open the Log below for the cause; fix it and click <b>Redeploy</b> "
              "(or run the %deploy cell again).",
    "interrupted": "The deploy was cut short (kernel restarted or stopped); click <b>Redeploy</b> "
                   "to run it again.",
}


def next_step(state: str) -> str:
    """What the user should do after a version ended ``state`` (HTML)."""
    return NEXT_STEPS.get(state, "Click <b>Redeploy</b> to try again.")


def untouched(serving: int | None) -> str:
    """What a rejected or failed version did not change."""
    if serving:
        return f"The serving version (v{serving}) was left untouched and keeps serving."
    return "Nothing was serving before, so nothing serves now."


def firing_alerts(name: str) -> list[Any]:
    """Alert rules of ``name`` firing now (none when monitoring cannot be read)."""
    from nbdeploy import monitoring

    try:
        return monitoring.alerts(name)
    except Exception:  # monitoring must never break the panel
        return []


def panel(name: str) -> DeploymentPanel:
    """Reopen the panel of an existing deployment from any notebook."""
    from nbdeploy import api

    api.get(name)  # clear NotFoundError for unknown names
    p = DeploymentPanel(name)
    p.refresh()
    return p


def describe_json(value: Any) -> str:
    """Pretty JSON for the Try-it answer."""
    return json.dumps(value, indent=2, default=str)
