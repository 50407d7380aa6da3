"""record() and read_metrics(): the metric channel between a validation notebook and nbdeploy."""

from __future__ import annotations

import math
from collections.abc import Iterator

import nbformat
import numpy as np
import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from nbformat.v4 import new_code_cell, new_notebook, new_output

from nbdeploy.validate.record import MIMETYPE, read_metrics, record


def _display(data: dict) -> dict:
    return new_output("display_data", data=data)


@pytest.fixture
def shell() -> Iterator[InteractiveShell]:
    """An IPython shell: the one other tests started, or a fresh one removed afterwards."""
    existed = InteractiveShell.initialized()
    yield InteractiveShell.instance()
    if not existed:
        InteractiveShell.clear_instance()


def test_record_outside_ipython_prints_plain_text(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(InteractiveShell, "_instance", None)  # hide a shell other tests started
    assert not InteractiveShell.initialized()
    record("auc", 0.97)
    record("note", "ok")
    record("n", np.int64(12))
    assert capsys.readouterr().out.splitlines() == ["auc = 0.97", "note = 'ok'", "n = 12"]


def test_record_inside_ipython_displays_the_mimetype(shell: InteractiveShell) -> None:
    with capture_output() as captured:
        record("auc", np.float32(0.5))
        record("passed", True)
    assert [out.data for out in captured.outputs] == [
        {MIMETYPE: {"auc": 0.5}, "text/plain": "auc = 0.5"},
        {MIMETYPE: {"passed": True}, "text/plain": "passed = True"},
    ]


@pytest.mark.parametrize(
    ("name", "value", "error", "message"),
    [
        ("", 1.0, TypeError, "non-empty string"),
        (3, 1.0, TypeError, "non-empty string"),
        ("auc", [0.9, 0.8], TypeError, "one value per name"),
        ("auc", None, TypeError, "must be a number"),
        ("auc", float("nan"), ValueError, "finite"),
        ("auc", np.float64("inf"), ValueError, "finite"),
    ],
)
def test_record_rejects_bad_input_with_a_clear_error(
    name: object, value: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        record(name, value)  # type: ignore[arg-type]


def test_read_metrics_merges_outputs_in_order_and_later_records_win(tmp_path) -> None:
    nb = new_notebook(
        cells=[
            new_code_cell("", outputs=[_display({MIMETYPE: {"auc": 0.9}, "text/plain": "x"})]),
            new_code_cell("", outputs=[new_output("stream", name="stdout", text="auc = 0.1")]),
            new_code_cell(
                "",
                outputs=[
                    _display({"text/plain": "not a metric"}),
                    _display({MIMETYPE: {"auc": 0.95, "f1": 0.8}}),
                    new_output("execute_result", data={MIMETYPE: {"rows": 10}}, execution_count=1),
                ],
            ),
        ]
    )
    assert read_metrics(nb) == {"auc": 0.95, "f1": 0.8, "rows": 10}
    path = tmp_path / "done.ipynb"
    nbformat.write(nb, str(path))
    assert read_metrics(path) == {"auc": 0.95, "f1": 0.8, "rows": 10}
    assert read_metrics(str(path))["auc"] == pytest.approx(0.95)


def test_read_metrics_of_a_notebook_without_records_is_empty() -> None:
    assert read_metrics(new_notebook(cells=[new_code_cell("1 + 1")])) == {}


def test_read_metrics_names_a_missing_file(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="no notebook at"):
        read_metrics(tmp_path / "missing.ipynb")


def test_recorded_values_survive_a_json_round_trip(shell: InteractiveShell, tmp_path) -> None:
    with capture_output() as captured:
        record("loss", 1e-12)
        record("big", 10**15)
    outputs = [_display(o.data) for o in captured.outputs]
    nb = new_notebook(cells=[new_code_cell("", outputs=outputs)])
    path = tmp_path / "round.ipynb"
    nbformat.write(nb, str(path))
    metrics = read_metrics(path)
    assert math.isclose(metrics["loss"], 1e-12) and metrics["big"] == 10**15
