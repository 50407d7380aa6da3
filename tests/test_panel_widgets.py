"""The deployment panel driven from Python against a real served deployment: progress and
log, reopen, buttons (Redeploy, Stop), the docs link, the Validation, Versions and Monitor
tabs, the alert badge, and the Overview's client snippets run for real.

One gated deploy made through the %deploy magic serves the whole module; the tests run in
file order (Redeploy and Stop come last)."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import nbdeploy
from nbdeploy import api
from nbdeploy.errors import NotFoundError
from nbdeploy.registry import Registry
from tests.helpers.procs import wait_until
from tests.helpers.shell import ipython_shell

pytestmark = pytest.mark.slow
NAME = "pw"
METRICS_NB = Path(__file__).resolve().parent / "notebooks" / "metrics.ipynb"


@pytest.fixture(scope="module")
def module_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = str(tmp_path_factory.mktemp("panel-widgets") / "nbdeploy")
    yield home
    from nbdeploy.serve.process import stop_pid

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NBDEPLOY_HOME", home)
        reg = Registry()
        for dep in reg.deployments():
            stop_pid(dep.get("router_pid"), grace=3)
            for v in reg.versions(dep["name"]):
                stop_pid(v.get("pid"), grace=3)


@pytest.fixture(autouse=True)
def _in_module_home(module_home: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBDEPLOY_HOME", module_home)


@pytest.fixture(scope="module")
def deployed(module_home: str) -> Any:
    """(shell, panel) after a gated `%deploy ... --wait` that passed and serves v1."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NBDEPLOY_HOME", module_home)
        ip = ipython_shell()
        ip.run_cell(
            "from sklearn.datasets import load_iris\n"
            "from sklearn.linear_model import LogisticRegression\n"
            "pw_X, pw_y = load_iris(return_X_y=True, as_frame=True)\n"
            "pw_model = LogisticRegression(max_iter=500).fit(pw_X, pw_y)\n"
        )
        # -p alpha=0.7 makes the notebook's score 1.4: the gate passes only if it arrives
        result = ip.run_cell(
            f"pw_panel = %deploy pw_model --name {NAME} --sample pw_X --validate {METRICS_NB} "
            "-p alpha=0.7 --require score>=1.4 --wait"
        )
        assert result.success, result.error_in_exec
        panel = ip.user_ns["pw_panel"]
        assert panel.status == "serving", panel.message.value + panel.log.value
        return ip, panel


def _row(ip: Any) -> dict[str, float]:
    return {k: float(v) for k, v in ip.user_ns["pw_X"].iloc[0].to_dict().items()}


def _expected(ip: Any) -> list[Any]:
    """What the live endpoint answers for the first sample row."""
    url = api.get(NAME).endpoint
    resp = httpx.post(f"{url}/predict", json={"rows": [_row(ip)]}, timeout=60)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_progress_bar_reaches_its_end_and_log_has_every_stage(deployed):
    _, panel = deployed
    assert panel.progress.value == panel.progress.max and panel.progress.bar_style == "success"
    lines = panel.log.value.splitlines()
    for stage in ("capturing", "building", "validating", "serving"):
        assert any(f"] {stage}: " in line for line in lines), panel.log.value
    assert f"{NAME} v1" in panel.header.value and ">serving</span>" in panel.header.value


def test_validation_tab_shows_the_gate_runs_with_params_and_metrics(deployed):
    _, panel = deployed
    body = panel.validation.body.value
    assert "metrics.ipynb" in body and ">passed<" in body
    assert "alpha=0.7" in body and "score=1.4" in body  # -p reached the validation notebook
    run = Registry().validation_runs(NAME, 1)[0]
    assert run["metrics"]["alpha"] == 0.7 and Path(run["output_path"]).is_file()


def test_reopen_panel_by_name_and_unknown_names(deployed):
    reopened = nbdeploy.panel(NAME)
    assert (reopened.version, reopened.status) == (1, "serving")
    assert f"{NAME} v1" in reopened.header.value and ">serving</span>" in reopened.header.value
    with pytest.raises(NotFoundError):
        nbdeploy.panel("no-such-deployment")


def test_docs_link_opens_the_swagger_page(deployed):
    _, panel = deployed
    href = re.search(r"href='([^']+)'", panel.docs_link.value)
    assert href, panel.docs_link.value
    resp = httpx.get(href.group(1), timeout=60, follow_redirects=True)
    assert resp.status_code == 200 and "swagger" in resp.text.lower()


def test_overview_snippets_run_against_the_live_endpoint(deployed):
    ip, panel = deployed
    expected = _expected(ip)
    assert expected == [int(ip.user_ns["pw_model"].predict(ip.user_ns["pw_X"].head(1))[0])]
    curl = subprocess.run(["bash", "-c", panel.overview.curl.value], capture_output=True, text=True,
                          timeout=120, check=True)
    assert json.loads(curl.stdout) == expected
    client = subprocess.run([sys.executable, "-c", panel.overview.client.value], capture_output=True,
                            text=True, timeout=120, check=True)
    assert ast.literal_eval(client.stdout.strip()) == expected


def test_try_it_shows_the_endpoint_answer(deployed):
    ip, panel = deployed
    panel.overview.row.value = json.dumps(_row(ip))
    panel.overview.send()
    answer = panel.overview.answer.value
    assert "HTTP 200" in answer
    shown = re.search(r"<pre[^>]*>(.*)</pre>", answer, re.S).group(1)
    assert json.loads(shown) == _expected(ip)


def test_monitor_tab_renders_after_one_request(deployed):
    from nbdeploy import monitoring

    ip, panel = deployed
    _expected(ip)
    wait_until(lambda: monitoring.kpis(NAME, None).get(1, {}).get("requests"), timeout=120,
               what="the request in the prediction log")
    panel.monitor.compute()
    body = panel.monitor.body.value
    assert "#dc3545" not in body, body  # no error span
    assert "<td>v1</td>" in body and "no traffic logged yet" not in body


def test_header_shows_an_alert_badge_when_rules_fire(deployed):
    from nbdeploy import monitoring

    ip, panel = deployed
    panel.refresh()
    assert "nbdeploy-alerts" not in panel.header.value  # no rules, no badge
    monitoring.set_alerts(NAME, ["p99_ms>0"])  # any latency fires once 10 requests are logged
    for _ in range(10):
        _expected(ip)
    wait_until(lambda: monitoring.alerts(NAME), timeout=120, what="the p99 alert to fire")
    panel.refresh()
    assert "nbdeploy-alerts" in panel.header.value and "alert" in panel.header.value
    assert "p99 latency" in panel.header.value  # the rule's message is the badge's tooltip


def test_versions_tab_shows_the_reproduce_verdict(deployed):
    from nbdeploy.reproduce import ReproduceResult

    _, panel = deployed
    panel.refresh()
    assert "reproduced" in panel.versions.table.value and ">exact<" not in panel.versions.table.value
    reg = Registry()
    lineage = reg.version(NAME, 1).get("lineage") or {}
    record = ReproduceResult(NAME, 1, "exact", "the rebuilt model predicts exactly the same",
                             notebook="train.ipynb", max_abs_diff=0.0, rows_differing=0, rows=150)
    reg.update_version(NAME, 1, lineage={**lineage, "reproduce": record.to_dict()})
    panel.refresh()
    table = panel.versions.table.value
    assert ">exact<" in table and "predicts exactly the same" in table


def test_redeploy_button_makes_v2(deployed):
    ip, panel = deployed
    ip.run_cell("pw_model = LogisticRegression(C=0.2, max_iter=500).fit(pw_X, pw_y)")
    panel.deploy_btn.click()
    panel.action.join(600)
    assert not panel.action.is_alive()
    assert (panel.version, panel.status) == (2, "serving"), panel.message.value + panel.log.value
    assert f"{NAME} v2" in panel.header.value
    assert Registry().deployment(NAME)["serving_version"] == 2
    assert _expected(ip) == [int(ip.user_ns["pw_model"].predict(ip.user_ns["pw_X"].head(1))[0])]


def test_stop_button_stops_the_version(deployed):
    _, panel = deployed
    panel.stop_btn.click()
    panel.action.join(120)
    assert not panel.action.is_alive()
    assert panel.status == "stopped" and ">stopped</span>" in panel.header.value
    assert api.get(f"{NAME}:{panel.version}").status() == "stopped"
