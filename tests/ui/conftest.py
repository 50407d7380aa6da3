"""Real-browser fixtures: Debian's chromium through Playwright, and a real `jupyter lab`."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
LAB_START_TIMEOUT = 180.0


@dataclass
class Lab:
    """A running `jupyter lab`: where it answers, its token, its process and log."""

    url: str
    token: str
    process: subprocess.Popen
    log: Path
    root: Path

    def lab_url(self) -> str:
        return f"{self.url}/lab?token={self.token}"

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _quiet_settings(settings_dir: Path) -> None:
    """No news or update toasts over the screenshots."""
    path = settings_dir / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))


def ui_required() -> bool:
    """`make test` (NBDEPLOY_REQUIRE_UI=1) and CI must run the browser tests, never skip them."""
    return os.environ.get("NBDEPLOY_REQUIRE_UI", "") not in ("", "0") or \
        os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_chromium(path: Path) -> None:
    """Skip without chromium, or fail when the UI tests are required (make test, CI)."""
    if path.exists():
        return
    message = f"{path} is missing: run `make ui-deps` (apt-get install chromium)"
    if ui_required():
        pytest.fail(message + "; the browser tests are required here (NBDEPLOY_REQUIRE_UI/CI)")
    pytest.skip(message)


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Debian chromium driven by Playwright."""
    require_chromium(CHROMIUM)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """`jupyter lab` on 127.0.0.1 with a random token and this test's NBDEPLOY_HOME."""
    root = tmp_path / "lab-root"
    root.mkdir()
    settings = tmp_path / "lab-settings"
    _quiet_settings(settings)
    env = {
        **os.environ,
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "lab-workspaces"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "lab-runtime"),
    }
    token, port = secrets.token_hex(16), _free_port()
    log = tmp_path / "jupyter-lab.log"
    cmd = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ip", "127.0.0.1",
        "--port", str(port), f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        "--ServerApp.port_retries=0",
    ]
    if os.geteuid() == 0:  # CI and these machines run as root
        cmd.append("--allow-root")
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                   cwd=root)
    lab = Lab(url=f"http://127.0.0.1:{port}", token=token, process=process, log=log, root=root)
    try:
        deadline = time.monotonic() + LAB_START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"jupyter lab exited with {process.returncode}:\n{lab.log_tail()}")
            try:
                if httpx.get(f"{lab.url}/api/status", params={"token": token}, timeout=2).is_success:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"jupyter lab did not answer within {LAB_START_TIMEOUT:.0f} s:\n"
                            f"{lab.log_tail()}")
            time.sleep(0.5)
        yield lab
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
