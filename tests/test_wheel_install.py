"""The wheel carries the prebuilt sidebar and the server switch: a fresh venv gets both
enabled by `pip install` alone, with no Node.js anywhere on PATH."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
BUILT = ROOT / "src" / "nbdeploy" / "labextension" / "package.json"
NODE_NAMES = ("node", "nodejs", "npm", "npx")
# what pip may need besides Python (sdists of dependencies, if any, need a compiler)
TOOLS = ("sh", "bash", "env", "uname", "cc", "gcc", "g++", "c++", "ld", "make", "git")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _node_free_env(tmp: Path, *first: Path) -> dict[str, str]:
    """An environment whose PATH holds ``first`` and a few system tools, but no Node."""
    tools = tmp / "tools"
    tools.mkdir(exist_ok=True)
    for name in TOOLS:
        found = shutil.which(name)
        if found and not (tools / name).exists():
            (tools / name).symlink_to(found)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JUPYTER", "PYTHON", "VIRTUAL_ENV", "NODE", "npm_"))}
    env["PATH"] = os.pathsep.join([*map(str, first), str(tools)])
    env["JUPYTER_CONFIG_DIR"] = str(tmp / "user-config")
    env["JUPYTER_DATA_DIR"] = str(tmp / "user-data")
    for name in NODE_NAMES:
        assert shutil.which(name, path=env["PATH"]) is None, f"{name} is on the test PATH"
    return env


def _run(cmd: list[str], env: dict[str, str], timeout: float = 1200) -> str:
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    text = ANSI.sub("", out.stdout + out.stderr)
    assert out.returncode == 0, f"{' '.join(cmd)} failed ({out.returncode}):\n{text[-4000:]}"
    return text


def test_wheel_installs_and_enables_both_extensions_without_node(tmp_path: Path) -> None:
    if not BUILT.exists():
        pytest.fail("the labextension is not built: run `make labextension` first")

    # build: the prebuilt asset exists, so the jupyter-builder hook must not need Node
    dist = tmp_path / "dist"
    build_env = _node_free_env(tmp_path)
    _run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-w", str(dist)], build_env)
    [wheel] = dist.glob("nbdeploy-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    data = "nbdeploy-0.1.0.data/data/"
    assert f"{data}share/jupyter/labextensions/nbdeploy/package.json" in names
    assert f"{data}share/jupyter/labextensions/nbdeploy/install.json" in names
    assert any(n.startswith(f"{data}share/jupyter/labextensions/nbdeploy/static/remoteEntry.")
               for n in names)
    assert f"{data}etc/jupyter/jupyter_server_config.d/nbdeploy.json" in names
    assert "nbdeploy/server/handlers.py" in names
    assert not [n for n in names if n.endswith(".map")], "a development build (source maps)"

    # install into a fresh venv, then ask Jupyter what it sees
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    env = _node_free_env(tmp_path, venv / "bin")
    env["VIRTUAL_ENV"] = str(venv)
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)], env)

    installed = venv / "share" / "jupyter" / "labextensions" / "nbdeploy"
    assert (installed / "package.json").is_file() and not installed.is_symlink()

    labext = _run([str(venv / "bin" / "jupyter"), "labextension", "list"], env)
    assert re.search(r"nbdeploy v0\.1\.0 enabled\s+OK \(python, nbdeploy\)", labext), labext

    serverext = _run([str(venv / "bin" / "jupyter"), "server", "extension", "list"], env)
    assert re.search(r"nbdeploy enabled", serverext), serverext
    assert re.search(r"nbdeploy 0\.1\.0 OK", serverext), serverext
