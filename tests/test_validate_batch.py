"""Batch runs: CLI-style value parsing, grid expansion, parallel kernels, tables and reports."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nbdeploy.validate.batch import (
    BatchResult,
    _stderr_progress,
    expand_grid,
    parse_grid,
    parse_param,
    parse_value,
    run_batch,
)
from nbdeploy.validate.report import write_html_report
from nbdeploy.validate.runner import RunResult

NOTEBOOKS = Path(__file__).parent / "notebooks"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("3", 3),
        ("-7", -7),
        ("0.25", 0.25),
        ("1e-3", 0.001),
        (".5", 0.5),
        ("true", True),
        ("False", False),
        ("null", None),
        ("None", None),
        ("'007'", "007"),
        ('"a b"', "a b"),
        ("churn-model", "churn-model"),
        ("http://127.0.0.1:3000", "http://127.0.0.1:3000"),
        ("nan", "nan"),
    ],
)
def test_parse_value_types_like_yaml(text: str, value: object) -> None:
    parsed = parse_value(text)
    assert parsed == value and type(parsed) is type(value)


def test_parse_param_and_grid() -> None:
    assert parse_param("threshold=0.9") == ("threshold", 0.9)
    assert parse_param("url=http://h:1/a=b") == ("url", "http://h:1/a=b")
    assert parse_param("name=") == ("name", "")
    assert parse_grid("seed=0,1, 2") == ("seed", [0, 1, 2])
    assert parse_grid("mode=fast,slow") == ("mode", ["fast", "slow"])
    for bad in ("noequals", "=3", "two words=1", "1x=2"):
        with pytest.raises(ValueError, match="key=value"):
            parse_param(bad)
    with pytest.raises(ValueError, match="at least one value"):
        parse_grid("seed=")


def test_expand_grid_is_the_cartesian_product_over_fixed_params() -> None:
    combos = expand_grid({"model": "m"}, {"a": [1, 2], "b": ["x", "y", "z"]})
    assert len(combos) == 6
    assert combos[0] == {"model": "m", "a": 1, "b": "x"}
    assert combos[-1] == {"model": "m", "a": 2, "b": "z"}
    assert len({tuple(sorted(c.items())) for c in combos}) == 6
    assert expand_grid({"k": 1}, {}) == [{"k": 1}]
    with pytest.raises(ValueError, match="both a fixed parameter and a grid axis"):
        expand_grid({"a": 1}, {"a": [1, 2]})
    with pytest.raises(ValueError, match="non-empty list"):
        expand_grid({}, {"a": []})


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> tuple[BatchResult, list[tuple]]:
    """Two notebooks x alpha in (0.1, 0.3), two kernels at a time, with requirements."""
    calls: list[tuple] = []
    result = run_batch(
        [NOTEBOOKS / "metrics.ipynb", NOTEBOOKS / "other.ipynb"],
        params={"label": "fixed"},
        grid={"alpha": [0.1, 0.3]},
        parallel=2,
        timeout=120,
        out_dir=tmp_path_factory.mktemp("batch") / "out",
        progress=lambda done, total, r: calls.append((done, total, r.status)),
        require=["score>=0.5", "never_recorded>0"],
    )
    return result, calls


@pytest.mark.slow
def test_batch_runs_every_notebook_for_every_combination(batch) -> None:
    result, calls = batch
    assert [(Path(r.notebook).name, r.parameters["alpha"]) for r in result.results] == [
        ("metrics.ipynb", 0.1),
        ("metrics.ipynb", 0.3),
        ("other.ipynb", 0.1),
        ("other.ipynb", 0.3),
    ]
    outputs = {r.output_path for r in result.results}
    assert len(outputs) == 4 and all(Path(p).is_file() for p in outputs)
    first, second, third, fourth = result.results
    # parameters really reached each kernel
    assert first.metrics["alpha"] == 0.1 and first.metrics["label"] == "fixed"
    assert second.metrics["alpha"] == 0.3
    assert third.metrics["alpha_squared"] == pytest.approx(0.01)
    assert fourth.metrics["alpha_squared"] == pytest.approx(0.09)
    assert sorted(c[0] for c in calls) == [1, 2, 3, 4] and {c[1] for c in calls} == {4}


@pytest.mark.slow
def test_requirements_fail_runs_and_the_batch(batch) -> None:
    result, _ = batch
    statuses = [r.status for r in result.results]
    # metrics.ipynb records score = 2 * alpha: 0.2 fails score>=0.5, 0.6 passes;
    # other.ipynb records no score, so the requirement does not apply to it
    assert statuses == ["failed", "passed", "passed", "passed"]
    assert result.results[0].reason == "requirement not met: score = 0.2, required >= 0.5"
    assert len(result.unmet) == 1 and result.unmet[0].startswith("never_recorded was not recorded")
    assert not result.ok
    assert result.counts == {"passed": 3, "failed": 1, "error": 0}


@pytest.mark.slow
def test_summary_table_is_aligned_and_complete(batch) -> None:
    result, _ = batch
    table = result.summary_table()
    lines = table.splitlines()
    assert lines[0].split() == ["notebook", "params", "status", "metrics", "time", "reason"]
    rows = lines[2:6]
    assert [row.split()[0] for row in rows] == ["metrics.ipynb"] * 2 + ["other.ipynb"] * 2
    assert "alpha=0.1" in rows[0] and "FAILED" in rows[0] and "score = 0.2" in rows[0]
    # columns line up: every row's status column starts at the same offset
    words = ["FAILED", "passed", "passed", "passed"]
    starts = {row.index(word) for row, word in zip(rows, words, strict=True)}
    assert len(starts) == 1
    assert "4 runs: 3 passed, 1 failed, 0 errors" in table
    assert "requirement not met: never_recorded" in table


@pytest.mark.slow
def test_html_report_links_each_executed_notebook(batch, tmp_path: Path) -> None:
    result, _ = batch
    path = write_html_report(result, tmp_path / "reports" / "validation.html")
    html = path.read_text()
    assert html.startswith("<!DOCTYPE html>") and "<style>" in html and "<script" not in html
    assert html.count('class="badge passed"') == 3 and html.count('class="badge failed"') == 1
    assert "validation failed" in html
    assert "score = 0.2, required &gt;= 0.5" in html
    assert "label=fixed" in html  # the parameter shared by every run is shown once
    hrefs = re.findall(r'href="([^"]+\.ipynb)"', html)
    assert len(hrefs) == 4
    assert all(not h.startswith("/") and (path.parent / h).resolve().is_file() for h in hrefs)


def test_default_progress_prints_one_line_per_run(capsys: pytest.CaptureFixture[str]) -> None:
    run = RunResult("a/nb.ipynb", "o.ipynb", {"alpha": 0.1}, "failed", "boom", {}, 2.04)
    _stderr_progress(3, 8, run)
    assert capsys.readouterr().err == "[3/8] failed nb.ipynb (alpha=0.1) 2.0s: boom\n"


def test_batch_rejects_bad_parallel(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="parallel"):
        run_batch([NOTEBOOKS / "metrics.ipynb"], parallel=0, out_dir=tmp_path, progress=False)


def test_empty_batch_is_not_ok() -> None:
    assert not BatchResult([], "out").ok
