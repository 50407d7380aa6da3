"""Spare kernels: the next run adopts a kernel started during the previous one, and nothing
is left running or left on disk when the block ends."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from nbdeploy.validate import spares
from nbdeploy.validate.batch import run_batch
from nbdeploy.validate.runner import run_notebook
from tests.helpers.procs import wait_until

pytestmark = pytest.mark.slow

PROBE = """
import os, sys
import nbdeploy
nbdeploy.record("pid", os.getpid())
nbdeploy.record("cwd", os.getcwd())
nbdeploy.record("marker", os.environ.get("NBD_SPARE_MARKER", ""))
nbdeploy.record("executed", len(In))  # a spare has run nothing before its notebook
"""


def _notebook(folder: Path, extra: str = "", name: str = "probe") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    nb = new_notebook(
        cells=[new_code_cell("seed = 0", metadata={"tags": ["parameters"]}),
               new_code_cell(PROBE + extra)],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}},
    )
    path = folder / f"{name}.ipynb"
    nbformat.write(nb, str(path))
    return path


def _run(path: Path, out: Path, next_spare: bool) -> dict:
    result = run_notebook(path, parameters={"seed": 1}, output_path=out, next_spare=next_spare)
    assert result.ok, result.reason
    return result.metrics


def _spare_pid() -> int | None:
    spare = spares._spares.get(__import__("threading").get_ident())
    return spare.km.provisioner.pid if spare else None


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] == "Z"


def test_next_run_adopts_the_spare_and_leftovers_are_killed(tmp_path: Path) -> None:
    nb = _notebook(tmp_path / "nb")
    out = tmp_path / "out"
    with spares.spare_kernels():
        first = _run(nb, out / "1.ipynb", next_spare=True)
        spare = _spare_pid()
        assert spare is not None and spare != first["pid"]
        second = _run(nb, out / "2.ipynb", next_spare=True)
        assert second["pid"] == spare  # adopted, not started
        assert second["cwd"] == str(nb.parent.resolve())
        assert first["executed"] == second["executed"]  # the spare ran nothing beforehand
        leftover = _spare_pid()
        assert leftover is not None and leftover not in (first["pid"], second["pid"])
    assert spares._spares == {}
    wait_until(lambda: _gone(leftover), timeout=15, what="the leftover spare to be killed")
    # no spare log or connection file stays behind; run logs go once the run passed
    assert not list(out.glob("*.kernel.log")) and not list(out.glob(".spare-*"))


def test_a_spare_started_for_other_settings_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here, there = _notebook(tmp_path / "here"), _notebook(tmp_path / "there")
    monkeypatch.setenv("NBD_SPARE_MARKER", "one")
    with spares.spare_kernels():
        _run(here, tmp_path / "o1.ipynb", next_spare=True)
        for_here = _spare_pid()
        moved = _run(there, tmp_path / "o2.ipynb", next_spare=True)  # another folder
        assert moved["pid"] != for_here and moved["cwd"] == str(there.parent.resolve())
        wait_until(lambda: _gone(for_here), timeout=15, what="the unused spare to be killed")
        for_there = _spare_pid()
        monkeypatch.setenv("NBD_SPARE_MARKER", "two")  # the environment changed meanwhile
        changed = _run(there, tmp_path / "o3.ipynb", next_spare=False)
        assert changed["pid"] != for_there and changed["marker"] == "two"
        assert _spare_pid() is None
    wait_until(lambda: _gone(for_there), timeout=15, what="the stale spare to be killed")


def test_outside_the_block_no_spare_is_kept(tmp_path: Path) -> None:
    _run(_notebook(tmp_path), tmp_path / "o.ipynb", next_spare=True)
    assert spares._spares == {}


def test_an_adopted_kernel_logs_its_stderr_to_the_run_that_uses_it(tmp_path: Path) -> None:
    crash = ("\nsys.__stderr__.write('native crash here\\n'); sys.__stderr__.flush()\n"
             "os._exit(3)")
    good, bad = _notebook(tmp_path / "a"), _notebook(tmp_path / "a", crash, "crash")
    out = tmp_path / "out"
    with spares.spare_kernels():
        _run(good, out / "ok.ipynb", next_spare=True)
        result = run_notebook(bad, parameters={}, output_path=out / "dead.ipynb")
    assert result.status == "failed" and "kernel died" in result.reason
    log = out / "dead.kernel.log"
    assert "native crash here" in log.read_text()
    assert not list(out.glob(".spare-*"))


def test_a_batch_leaves_no_spare_behind(tmp_path: Path) -> None:
    notebooks = [_notebook(tmp_path / "nb", name=f"p{i}") for i in range(3)]
    batch = run_batch(notebooks, parallel=1, out_dir=tmp_path / "runs", progress=False)
    assert [r.status for r in batch.results] == ["passed"] * 3
    pids = [r.metrics["pid"] for r in batch.results]
    assert len(set(pids)) == 3
    assert spares._spares == {}
    assert not list((tmp_path / "runs").glob(".spare-*"))
