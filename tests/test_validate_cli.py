"""`nbdeploy validate`: exit codes, printed summary and the HTML report."""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

from nbdeploy.validate.cli import validate

NOTEBOOKS = Path(__file__).parent / "notebooks"
METRICS = str(NOTEBOOKS / "metrics.ipynb")


def _invoke(*args: str):
    return CliRunner().invoke(validate, list(args), catch_exceptions=False)


def test_help_teaches_with_an_example() -> None:
    result = _invoke("--help")
    assert result.exit_code == 0
    assert "nbdeploy validate checks/quality.ipynb --model churn:3" in result.output
    assert "--require" in result.output and "Exit status" in result.output


@pytest.mark.slow
def test_passing_run_exits_0_and_writes_the_report(tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    result = _invoke(
        METRICS, "-p", "alpha=0.3", "--out", str(tmp_path / "runs"), "--report", str(report),
        "--require", "score>=0.5", "--require", "label==base",
    )
    assert result.exit_code == 0, result.output
    assert "[1/1] passed metrics.ipynb" in result.stderr
    assert "1 runs: 1 passed, 0 failed, 0 errors" in result.stdout
    assert f"report: {report}" in result.stdout
    html = report.read_text()
    assert "all runs passed" in html and 'class="badge passed"' in html
    assert "score = 0.6" in html
    assert (tmp_path / "runs" / "metrics.ipynb").is_file()


@pytest.mark.slow
def test_failing_notebook_exits_1_with_the_reason() -> None:
    result = _invoke(str(NOTEBOOKS / "failing.ipynb"))
    assert result.exit_code == 1
    assert "AssertionError: score 0.5 is below the threshold 0.9" in result.stdout
    report = Path(result.stdout.rsplit("report: ", 1)[1].strip())
    # the default output folder lives under NBDEPLOY_HOME (a temp folder in tests)
    assert report.is_relative_to(Path(os.environ["NBDEPLOY_HOME"]) / "runs" / "validate")
    assert 'class="badge failed"' in report.read_text()
    assert (report.parent / "failing.ipynb").is_file()


@pytest.mark.slow
def test_unmet_requirement_exits_1(tmp_path: Path) -> None:
    result = _invoke(METRICS, "--out", str(tmp_path), "--require", "score>1")
    assert result.exit_code == 1
    assert "requirement not met: score = 1, required > 1" in result.stdout


@pytest.mark.slow
def test_model_option_injects_what_the_core_resolves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = []

    def validation_params(ref: str) -> dict:
        seen.append(ref)
        if ref.startswith("unknown"):
            raise LookupError("no model named 'unknown': see `nbdeploy list`")
        return {"model_name": "churn", "model_version": 3, "model_tag": "churn:abc",
                "endpoint": None}

    fake = types.ModuleType("nbdeploy.api")
    fake.validation_params = validation_params
    monkeypatch.setitem(sys.modules, "nbdeploy.api", fake)
    result = _invoke(METRICS, "--model", "churn:3", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert seen == ["churn:3"]
    assert "model_name=churn" in result.stdout  # metric recorded by the notebook
    bad = _invoke(METRICS, "--model", "unknown", "--out", str(tmp_path))
    assert bad.exit_code == 2 and "no model named 'unknown'" in bad.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([METRICS, "-p", "alpha"], "key=value"),
        ([METRICS, "--grid", "alpha="], "at least one value"),
        ([METRICS, "-p", "alpha=1", "--grid", "alpha=1,2"], "both a fixed parameter"),
        ([METRICS, "--require", "auc"], "cannot read requirement"),
        ([METRICS, "--parallel", "0"], "--parallel"),
        (["missing.ipynb"], "does not exist"),
        ([], "Missing argument"),
    ],
)
def test_usage_errors_exit_2_with_a_message(args: list[str], message: str) -> None:
    result = _invoke(*args)
    assert result.exit_code == 2
    assert message in result.output
