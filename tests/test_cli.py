"""The nbdeploy command against real deployments."""

from __future__ import annotations

import json
import os
import signal

import pytest
from click.testing import CliRunner
from sklearn.linear_model import LogisticRegression

import nbdeploy.api as api
from nbdeploy.cli import cli
from nbdeploy.registry import Registry
from tests import models


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_help_teaches_with_examples():
    code, out = run("--help")
    assert code == 0 and "Typical session" in out and "nbdeploy predict iris" in out
    code, out = run("predict", "--help")
    assert code == 0 and "--csv" in out and "Examples" in out
    code, out = run("rollback", "--help")
    assert code == 0 and "--to" in out


def test_unknown_names_are_one_clear_line():
    code, out = run("show", "nope")
    assert code == 1 and "no deployment named 'nope'" in out and "Traceback" not in out
    code, out = run("show", "nope:x")
    assert code == 1 and "NAME:VERSION" in out
    code, out = run("list")
    assert code == 0 and "Nothing deployed yet" in out


def test_redeploy_of_unchanged_model_reuses_the_version():
    X, y = models.iris()
    model = LogisticRegression(max_iter=500).fit(X, y)
    first = api.deploy(model, "same", X, serve=False)
    again = api.deploy(model, "same", X, serve=False)
    assert first.version == again.version == 1
    assert [e["action"] for e in Registry().events("same")] == ["deploy", "deploy-unchanged"]
    changed = api.deploy(LogisticRegression(max_iter=500, C=0.3).fit(X, y), "same", X, serve=False)
    assert changed.version == 2


@pytest.mark.slow
def test_list_show_predict_status_logs_stop(tmp_path):
    X, y = models.iris()
    model = LogisticRegression(max_iter=500).fit(X, y)
    dep = api.deploy(model, "cli-iris", X)
    try:
        code, out = run("list")
        assert code == 0 and "cli-iris" in out and "serving" in out and dep.endpoint in out
        assert dep.endpoint != dep.url  # the stable endpoint, not the version's own port
        code, out = run("list", "--json")
        assert json.loads(out)[0]["status"] == "serving"
        code, out = run("show", "cli-iris")
        assert code == 0 and "sepal length (cm)" in out and "scikit-learn==" in out
        rows = X.head(3).to_dict(orient="records")
        code, out = run("predict", "cli-iris", "--json", json.dumps(rows))
        assert code == 0 and json.loads(out) == model.predict(X.head(3)).tolist()
        csv = tmp_path / "rows.csv"
        X.head(4).to_csv(csv, index=False)
        code, out = run("predict", "cli-iris", "--csv", str(csv), "--proba")
        assert code == 0 and len(json.loads(out)) == 4
        code, out = run("predict", "cli-iris", "--json", '[{"sepal length (cm)": "x"}]')
        assert code == 1 and "400" in out and "sepal length (cm)" in out
        code, out = run("predict", "cli-iris", "--json", "{not json")
        assert code == 2 and "not valid JSON" in out
        code, out = run("logs", "cli-iris")
        assert code == 0 and "bentoml serve" in out
        # a killed server is reported down, with a non-zero exit code and what to do
        os.kill(dep.row["pid"], signal.SIGKILL)
        code, out = run("status")
        assert code == 1 and "down" in out and "nbdeploy serve" in out
        code, out = run("serve", "cli-iris")
        assert code == 0 and "serving" in out
        code, out = run("status", "cli-iris")
        assert code == 0 and "serving" in out
        code, out = run("stop", "cli-iris")
        assert code == 0 and "stopped" in out
        assert api.get("cli-iris").status() == "stopped"
    finally:
        api.stop("cli-iris")
