"""The wheel's build hook really builds the sidebar: from a copy of the project without the
prebuilt files, `pip wheel` runs hatch-jupyter-builder's `jlpm build:prod` (Node needed here,
unlike the install checked in test_wheel_install.py) and ships a production build."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
NODE_MODULES = ROOT / "labextension" / "node_modules"
SKIP = shutil.ignore_patterns(".git", ".venv", "node_modules", "lib", "tsconfig.tsbuildinfo",
                              "test-artifacts", ".nbdeploy-demo", "dist", "build", "__pycache__",
                              ".pytest_cache", ".ruff_cache", "*.egg-info")
STATIC = "nbdeploy-0.1.0.data/data/share/jupyter/labextensions/nbdeploy/static/"


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
