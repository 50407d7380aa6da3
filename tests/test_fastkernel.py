"""Kernels forked from the warm fork server behave like kernels started the ordinary way."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from nbdeploy.validate import fastkernel
from nbdeploy.validate.runner import run_notebook
from tests.helpers.procs import wait_until

PROBE = """
import os, random, sys
import nbdeploy
nbdeploy.record("ppid", os.getppid())
nbdeploy.record("pgid_is_pid", os.getpgid(0) == os.getpid())
nbdeploy.record("cwd", os.getcwd())
nbdeploy.record("marker", os.environ.get("NBD_TEST_MARKER", ""))
nbdeploy.record("random", random.random())
import numpy as np
nbdeploy.record("np_random", float(np.random.random()))
nbdeploy.record("main", __name__)
nbdeploy.record("path", repr(sys.path))
nbdeploy.record("argv0", sys.argv[0])
nbdeploy.record("cwd_importable", __import__("here").VALUE)
"""


def _probe(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "here.py").write_text("VALUE = 'imported from the notebook folder'\n")
    nb = new_notebook(
        cells=[new_code_cell("seed = 0", metadata={"tags": ["parameters"]}), new_code_cell(PROBE)],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}},
    )
    path = folder / "probe.ipynb"
    nbformat.write(nb, str(path))
    return path


def _run(path: Path, out: Path) -> dict:
    result = run_notebook(path, parameters={}, output_path=out)
    assert result.ok, result.reason
    return result.metrics


@pytest.mark.slow
def test_forked_kernel_runs_in_the_notebook_folder_with_its_own_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBD_TEST_MARKER", "first")
    notebook = _probe(tmp_path / "nb")
    first = _run(notebook, tmp_path / "a.ipynb")
    server = fastkernel.fork_server_pid()
    assert server is not None and server != os.getpid()
    assert first["ppid"] == server  # forked, not started from scratch
    assert first["pgid_is_pid"] is True  # own process group: interrupts reach it alone
    assert first["cwd"] == str(notebook.parent)
    assert first["marker"] == "first"
    assert first["main"] == "__main__"
    assert first["argv0"].endswith("ipykernel_launcher.py")
    assert first["cwd_importable"] == "imported from the notebook folder"

    monkeypatch.setenv("NBD_TEST_MARKER", "second")  # the environment of *this* run
    second = _run(notebook, tmp_path / "b.ipynb")
    assert second["ppid"] == server
    assert second["marker"] == "second"
    assert second["random"] != first["random"]  # random reseeds in every fork
    assert second["np_random"] != first["np_random"]  # numpy is not preloaded by the server


@pytest.mark.slow
def test_kernels_start_the_ordinary_way_when_forking_does_not_fit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    notebook = _probe(tmp_path / "nb")
    _run(notebook, tmp_path / "warm.ipynb")  # the fork server runs now
    monkeypatch.setenv("PYTHONWARNINGS", "ignore::DeprecationWarning")  # changes start-up
    assert _run(notebook, tmp_path / "a.ipynb")["ppid"] == os.getpid()
    monkeypatch.delenv("PYTHONWARNINGS")
    monkeypatch.setenv("NBDEPLOY_FORK_KERNELS", "0")
    ordinary = _run(notebook, tmp_path / "b.ipynb")
    assert ordinary["ppid"] == os.getpid()
    monkeypatch.delenv("NBDEPLOY_FORK_KERNELS")
    forked = _run(notebook, tmp_path / "c.ipynb")
    assert forked["ppid"] == fastkernel.fork_server_pid()
    assert forked["path"] == ordinary["path"]  # same import path, '' (the cwd) included
    assert forked["argv0"] == ordinary["argv0"]


@pytest.mark.slow
def test_fork_server_and_its_kernels_exit_with_their_caller(tmp_path: Path) -> None:
    script = textwrap.dedent("""
        import asyncio, json, os, sys
        from nbdeploy.validate.fastkernel import fork_server_pid, kernel_manager

        async def main():
            km = kernel_manager(os.devnull)(kernel_name="python3")
            await km.start_kernel(cwd=sys.argv[1])
            kc = km.client()
            kc.start_channels()
            await kc.wait_for_ready(timeout=60)
            print(json.dumps({"server": fork_server_pid(), "kernel": km.provisioner.pid}),
                  flush=True)
            os._exit(0)  # dies without shutting anything down

        asyncio.run(main())
    """)
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    pids = json.loads(proc.stdout.strip().splitlines()[-1])
    assert pids["server"] and pids["kernel"] and pids["server"] != pids["kernel"]

    def gone(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"

    wait_until(lambda: gone(pids["server"]), timeout=15, what="the fork server to exit")
    wait_until(lambda: gone(pids["kernel"]), timeout=15, what="its kernel to exit")


@pytest.mark.slow
def test_interrupt_and_kill_reach_a_forked_kernel(tmp_path: Path) -> None:
    # the runner's timeout interrupts the cell (SIGINT to the kernel's group), then kills it
    nb = new_notebook(
        cells=[new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
               new_code_cell("import time\ntime.sleep(60)")],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}},
    )
    path = tmp_path / "sleepy.ipynb"
    nbformat.write(nb, str(path))
    result = run_notebook(path, parameters={}, output_path=tmp_path / "out.ipynb", timeout=2)
    assert result.status == "failed" and "timed out after 2 s" in result.reason
    assert result.duration_s < 30
    assert fastkernel.fork_server_pid() is not None  # the server survives its kernels' ends


def test_warm_starts_the_fork_server_in_the_background() -> None:
    script = textwrap.dedent("""
        import os, time
        from nbdeploy.validate import fastkernel
        assert fastkernel.fork_server_pid() is None
        fastkernel.warm()
        deadline = time.monotonic() + 60
        while fastkernel.fork_server_pid() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        pid = fastkernel.fork_server_pid()
        fastkernel.warm()  # a second call starts nothing new
        time.sleep(0.2)
        print(pid, fastkernel.fork_server_pid(), os.getpid())
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    first, second, caller = map(int, proc.stdout.split())
    assert first == second != caller
