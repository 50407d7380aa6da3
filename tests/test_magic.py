"""The %deploy magic in a real IPython shell: parsing, errors, namespace lookup, background runs."""

from __future__ import annotations

import pytest
from IPython.testing.globalipapp import get_ipython

from nbdeploy.notebook import jobs
from nbdeploy.notebook.magic import _pairs, _requirements
from nbdeploy.registry import Registry


@pytest.fixture(scope="module")
def ip():
    shell = get_ipython()
    shell.run_line_magic("load_ext", "nbdeploy")
    shell.run_cell(
        "from sklearn.datasets import load_iris\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "X, y = load_iris(return_X_y=True, as_frame=True)\n"
        "model = LogisticRegression(max_iter=500).fit(X, y)\n"
    )
    return shell


def _error(ip, line: str) -> str:
    result = ip.run_cell(line)
    assert not result.success
    return str(result.error_in_exec)


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


@pytest.mark.slow
def test_cell_magic_takes_one_option_per_line(ip):
    ip.run_cell("%%deploy model\n--name cell-iris\n--sample X\n# a comment\n--no-serve\n")
    dep = jobs.wait("cell-iris", timeout=300)
    assert dep.name == "cell-iris" and dep.version == 1


@pytest.mark.slow
def test_failure_shows_in_the_panel_with_what_to_do(ip, tmp_path):
    ip.run_cell(f"p2 = %deploy model --name fails --sample X --validate {tmp_path}/missing.ipynb --wait")
    panel = ip.user_ns["p2"]
    assert panel.status in ("rejected", "failed")
    assert "validation notebook not found" in panel.message.value
    assert "serving version" in panel.message.value or "previous version" in panel.message.value
