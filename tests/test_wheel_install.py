"""The wheel carries the prebuilt sidebar and the server switch: a fresh venv gets both
enabled by `pip install` alone, with no Node.js anywhere on PATH. And the wheel's build hook
really builds the sidebar: from a copy without the prebuilt files, `pip wheel` runs
hatch-jupyter-builder's `jlpm build:prod` (Node needed there) and ships a production build."""

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
NODE_MODULES = ROOT / "labextension" / "node_modules"
SKIP = shutil.ignore_patterns(".git", ".venv", "node_modules", "lib", "tsconfig.tsbuildinfo",
                              "test-artifacts", ".nbdeploy-demo", "dist", "build", "__pycache__",
                              ".pytest_cache", ".ruff_cache", "*.egg-info")
STATIC = "nbdeploy-0.1.0.data/data/share/jupyter/labextensions/nbdeploy/static/"


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


def test_wheel_from_a_clean_copy_runs_the_production_build(tmp_path: Path) -> None:
    if shutil.which("node") is None or not NODE_MODULES.is_dir():
        pytest.fail("this test needs node and labextension/node_modules (`make labextension`)")
    copy = tmp_path / "src-copy"
    shutil.copytree(ROOT, copy, ignore=SKIP, symlinks=True)
    shutil.rmtree(copy / "src" / "nbdeploy" / "labextension", ignore_errors=True)
    assert not (copy / "src" / "nbdeploy" / "labextension").exists()
    # the hook runs `jlpm install` (a no-op with this lockfile) before `jlpm build:prod`:
    # give it hard links of the installed modules, never the checkout's own directory
    subprocess.run(["cp", "-al", str(NODE_MODULES), str(copy / "labextension" / "node_modules")],
                   check=True, timeout=600)

    dist = tmp_path / "dist"
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", str(copy), "--no-deps", "-w",
                          str(dist)], capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]

    # the hook built it in the copy, and the wheel ships that build
    assert (copy / "src" / "nbdeploy" / "labextension" / "static" / "style.js").is_file()
    [wheel] = dist.glob("nbdeploy-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    static = [n for n in names if n.startswith(STATIC)]
    assert any(n.startswith(STATIC + "remoteEntry.") for n in static), static
    assert not [n for n in names if n.endswith(".map")], "the wheel ships source maps"
