"""The %deploy magic in a real IPython shell: parsing, errors, namespace lookup, background runs."""

from __future__ import annotations

import pandas as pd
import pytest
from IPython.core.error import UsageError

from nbdeploy.notebook import jobs
from nbdeploy.notebook.magic import _pairs, _requirements, default_name
from nbdeploy.refs import check_name
from nbdeploy.registry import Registry
from nbdeploy.serve import process
from tests.helpers.shell import ipython_shell

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def ip():
    shell = ipython_shell()
    shell.run_cell(
        "from sklearn.datasets import load_iris\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "X, y = load_iris(return_X_y=True, as_frame=True)\n"
        "model = LogisticRegression(max_iter=500).fit(X, y)\n"
    )
    return shell


def _error(ip, line: str) -> str:
    """The message of the error ``line`` raises: a UsageError, one line (IPython shows it
    without a traceback)."""
    result = ip.run_cell(line)
    assert not result.success
    exc = result.error_in_exec
    assert isinstance(exc, UsageError), f"{type(exc).__name__}: {exc}"
    assert "\n" not in str(exc).strip(), str(exc)
    return str(exc)


def test_help_is_real(ip):
    doc = ip.find_line_magic("deploy").__doc__
    assert "--sample" in doc and "--validate" in doc and "--require" in doc and "Example" in doc


def test_misspelled_variable_suggests_the_right_one(ip):
    msg = _error(ip, "%deploy modle --sample X")
    assert "no variable named 'modle'" in msg and "Did you mean model" in msg


def test_missing_sample_says_how_to_give_one(ip):
    assert "--sample is required" in _error(ip, "%deploy model")


def test_unsupported_object_names_what_is_supported(ip):
    ip.run_cell("not_a_model = 42")
    msg = _error(ip, "%deploy not_a_model --sample X")
    assert "cannot deploy an object of type builtins.int" in msg and "scikit-learn" in msg


def test_bad_name_and_bad_options(ip):
    assert "invalid deployment name" in _error(ip, "%deploy model --sample X --name 'Bad Name!'")
    assert "METRIC OP VALUE" in _error(ip, "%deploy model --sample X --require auc")


def test_unknown_format_and_skops_for_a_non_sklearn_object(ip):
    assert "invalid choice" in _error(ip, "%deploy model --sample X --format onnx")
    ip.run_cell("fn = lambda df: df.sum(axis=1)")
    assert "format='skops' is for scikit-learn" in _error(ip, "%deploy fn --sample X --format skops")


@pytest.mark.parametrize(("var", "name"), [
    ("pipe.best_estimator_", "pipe-best-estimator"), ('models["rf"]', "models-rf"),
    ("X_train", "x-train"), ("Model__v2", "model-v2"),
])
def test_default_name_from_any_variable_expression_is_valid(var, name):
    assert default_name(var) == name and check_name(name) == name


def test_dotted_model_variable_is_looked_up(ip):
    ip.run_cell("class Box: pass\nbox = Box(); box.inner = 42")
    # found by attribute access (and then refused for what it is), not "no variable named"
    assert "cannot deploy an object of type builtins.int" in _error(ip, "%deploy box.inner --sample X")


def test_deployments_says_when_nothing_is_deployed(ip, capsys):
    assert ip.run_line_magic("deployments", "") is None
    assert "Nothing deployed yet" in capsys.readouterr().out


def test_option_parsers():
    assert _pairs(["alpha=0.5", "n=3", "flag=true", "s=text"], "-p") == {
        "alpha": 0.5, "n": 3, "flag": True, "s": "text"}
    assert _requirements(["auc>=0.95", "rmse < 3"]) == {"auc": ">=0.95", "rmse": "<3"}


@pytest.mark.slow
def test_deploy_returns_at_once_and_kernel_stays_responsive(ip):
    ip.run_cell("panel = %deploy model --name magic-iris --sample X --no-serve")
    panel = ip.user_ns["panel"]
    assert panel.name == "magic-iris"
    # the deploy runs in the background: a trivial cell completes while the job is alive
    ip.run_cell("probe = 1 + 1")
    alive_during = "magic-iris" in jobs.running()
    assert ip.user_ns["probe"] == 2
    dep = jobs.wait("magic-iris", timeout=300)
    assert alive_during, "the magic blocked until the deploy finished"
    assert dep.version == 1 and Registry().version("magic-iris", 1)["status"] == "ready"
    assert panel.version == 1 and "magic-iris v1" in panel.header.value
    # built with --no-serve: "ready" to start, not "stopped"
    assert panel.status == "ready" and ">ready</span>" in panel.header.value


@pytest.mark.slow
def test_cell_magic_takes_one_option_per_line(ip):
    ip.run_cell("%%deploy model\n--name cell-iris\n--sample X\n# a comment\n--no-serve\n")
    dep = jobs.wait("cell-iris", timeout=300)
    assert dep.name == "cell-iris" and dep.version == 1


@pytest.mark.slow
def test_failure_shows_in_the_panel_with_what_to_do(ip, tmp_path):
    ip.run_cell(f"p2 = %deploy model --name fails --sample X --validate {tmp_path}/missing.ipynb --wait")
    panel = ip.user_ns["p2"]
    assert panel.status == "rejected"
    assert "validation notebook not found" in panel.message.value
    # what to do next, and that nothing that served was touched
    assert "See the Validation tab" in panel.message.value
    assert "click <b>Redeploy</b>" in panel.message.value
    assert "Nothing was serving before" in panel.message.value


@pytest.mark.slow
def test_skops_format_port_explain_and_deployments_table(ip):
    port = process.free_port()
    ip.run_cell(f"p3 = %deploy model --name skx --sample X --format skops --port {port} --explain --wait")
    panel = ip.user_ns["p3"]
    assert panel.status == "serving", panel.message.value + panel.log.value
    row = Registry().version("skx", 1)
    assert row["framework"] == "skops" and row["port"] == port
    from nbdeploy import api

    dep = api.get("skx:1")
    assert dep.url == f"http://127.0.0.1:{port}"
    assert list(dep.predict(ip.user_ns["X"].head(3))) == list(ip.user_ns["model"].predict(
        ip.user_ns["X"].head(3)))
    # --explain: the Explain tab is selected and holds three PNG plots
    assert panel.tabs.selected_index == 2
    for image in (panel.explain.bar, panel.explain.beeswarm, panel.explain.waterfall):
        assert bytes(image.value).startswith(PNG), panel.explain.note.value
    assert "explainer" in panel.explain.note.value
    table = ip.run_line_magic("deployments", "")
    assert isinstance(table, pd.DataFrame) and list(table.index) == ["skx"]
    assert list(table.columns) == ["version", "status", "endpoint", "framework", "task", "created_by"]
    assert table.loc["skx", "status"] == "serving" and table.loc["skx", "framework"] == "skops"
