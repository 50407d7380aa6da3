"""run_notebook(): real papermill kernels, and every way a validation run can end."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest

from nbdeploy.validate.runner import run_notebook

NOTEBOOKS = Path(__file__).parent / "notebooks"

slow = pytest.mark.slow


def _error_outputs(path: Path) -> list[str]:
    nb = nbformat.read(str(path), as_version=4)
    return [
        f"{out.ename}: {out.evalue}"
        for cell in nb.cells
        for out in cell.get("outputs", [])
        if out.output_type == "error"
    ]


@slow
def test_passing_run_injects_parameters_and_reads_metrics_back(tmp_path: Path) -> None:
    out = tmp_path / "runs" / "metrics.ipynb"
    result = run_notebook(
        NOTEBOOKS / "metrics.ipynb",
        parameters={"alpha": 0.25, "label": "grid", "model_name": "iris"},
        output_path=out,
        timeout=120,
    )
    assert (result.status, result.reason, result.failed_cell) == ("passed", None, None)
    assert result.ok and out.is_file()
    assert result.metrics["alpha"] == 0.25
    assert result.metrics["label"] == "grid"
    assert result.metrics["model_name"] == "iris"
    assert result.metrics["score"] == 0.5  # recorded twice: 1.0 then alpha * 2
    # the kernel is this environment's interpreter, started in the notebook's folder
    assert result.metrics["python"] == sys.executable
    assert Path(result.metrics["cwd"]) == NOTEBOOKS.resolve()
    assert result.warnings == []
    assert not out.with_suffix(".kernel.log").exists()
    assert nbformat.read(str(out), as_version=4).metadata.papermill["parameters"]["alpha"] == 0.25


@slow
def test_unknown_parameter_is_a_warning_and_cwd_is_honoured(tmp_path: Path) -> None:
    result = run_notebook(
        NOTEBOOKS / "metrics.ipynb",
        parameters={"alpha": 1, "bogus": 3, "endpoint": None},
        output_path=tmp_path / "out.ipynb",
        cwd=tmp_path,
    )
    assert result.status == "passed"
    assert len(result.warnings) == 1
    assert "bogus" in result.warnings[0] and "endpoint" not in result.warnings[0]
    assert Path(result.metrics["cwd"]) == tmp_path


@slow
def test_failing_cell_gives_the_exception_and_the_cell(tmp_path: Path) -> None:
    out = tmp_path / "failing.ipynb"
    result = run_notebook(
        NOTEBOOKS / "failing.ipynb", parameters={"threshold": 0.8}, output_path=out
    )
    assert result.status == "failed"
    assert "AssertionError: score 0.5 is below the threshold 0.8" in result.reason
    assert result.failed_cell == 3  # index in the source notebook (markdown, parameters, ...)
    assert "assert score >= threshold" in result.reason
    assert result.metrics == {"score": 0.5}  # recorded before the failure, not after
    assert any("AssertionError" in e for e in _error_outputs(out))


@slow
def test_cell_timeout_fails_the_run_and_keeps_the_partial_notebook(tmp_path: Path) -> None:
    out = tmp_path / "sleeping.ipynb"
    result = run_notebook(NOTEBOOKS / "sleeping.ipynb", parameters={}, output_path=out, timeout=2)
    assert result.status == "failed"
    assert "timed out after 2 s" in result.reason
    assert result.failed_cell == 3
    assert result.metrics == {"started": True}
    assert any(e.startswith("CellTimeoutError") for e in _error_outputs(out))
    cells = nbformat.read(str(out), as_version=4).cells
    assert cells[3].metadata.papermill["status"] == "failed"


@slow
def test_kernel_death_is_reported_and_the_call_returns(tmp_path: Path) -> None:
    out = tmp_path / "dying.ipynb"
    result = run_notebook(NOTEBOOKS / "dying.ipynb", parameters={"exit_code": 3}, output_path=out)
    assert result.status == "failed"
    assert "kernel died" in result.reason
    assert result.failed_cell == 3  # parameters were injected: the index is still the source's
    assert result.metrics == {"started": True}
    assert out.is_file() and out.with_suffix(".kernel.log").is_file()
    assert any(e.startswith("DeadKernelError") for e in _error_outputs(out))


def test_notebook_without_parameters_cell_explains_how_to_tag(tmp_path: Path) -> None:
    out = tmp_path / "np.ipynb"
    result = run_notebook(
        NOTEBOOKS / "no_parameters.ipynb", parameters={"alpha": 1}, output_path=out
    )
    assert result.status == "error"
    assert "no cell tagged 'parameters'" in result.reason and "property inspector" in result.reason
    assert out.is_file()  # written even though nothing ran


def test_required_parameter_left_none_is_an_error_naming_the_fix(tmp_path: Path) -> None:
    out = tmp_path / "req.ipynb"
    result = run_notebook(NOTEBOOKS / "required.ipynb", parameters={}, output_path=out)
    assert result.status == "error"
    assert result.reason == "missing parameter data_path: pass -p data_path=..."
    explicit = run_notebook(
        NOTEBOOKS / "required.ipynb",
        parameters={"data_path": "x.csv", "limit": None},
        output_path=out,
        required=["limit", "data_path"],
    )
    assert explicit.status == "error"
    assert explicit.reason == "missing parameter limit: pass -p limit=..."


@slow
def test_required_parameter_given_runs(tmp_path: Path) -> None:
    result = run_notebook(
        NOTEBOOKS / "required.ipynb",
        parameters={"data_path": "held_out.csv"},
        output_path=tmp_path / "req.ipynb",
    )
    assert result.status == "passed"
    assert result.metrics == {"data_path": "held_out.csv"}


def test_missing_and_unreadable_notebooks(tmp_path: Path) -> None:
    missing = run_notebook(tmp_path / "nope.ipynb", parameters={}, output_path=tmp_path / "o.ipynb")
    assert missing.status == "error" and "notebook not found" in missing.reason
    assert not (tmp_path / "o.ipynb").exists()
    bad = tmp_path / "bad.ipynb"
    bad.write_text("this is not json")
    unreadable = run_notebook(bad, parameters={}, output_path=tmp_path / "o.ipynb")
    assert unreadable.status == "error" and "not a readable notebook" in unreadable.reason


def test_unknown_kernel_says_how_to_list_kernels(tmp_path: Path) -> None:
    out = tmp_path / "k.ipynb"
    result = run_notebook(
        NOTEBOOKS / "metrics.ipynb", parameters={}, output_path=out, kernel_name="no-such-kernel"
    )
    assert result.status == "error"
    assert "no-such-kernel" in result.reason and "jupyter kernelspec list" in result.reason
    assert out.is_file()


def test_stale_output_from_an_earlier_run_is_not_read(tmp_path: Path) -> None:
    out = tmp_path / "o.ipynb"
    old = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("")])
    nbformat.write(old, str(out))
    result = run_notebook(tmp_path / "gone.ipynb", parameters={}, output_path=out)
    assert result.status == "error" and not out.exists()
