"""The quickstart notebook in a real JupyterLab in Debian's Chromium: run it, watch the panel
reach "serving", click Try it, see a prediction."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from nbdeploy import api
from nbdeploy.registry import Registry
from nbdeploy.serve import process
from tests.ui.conftest import require_chromium

CHROMIUM = "/usr/bin/chromium"
EXAMPLES = Path(__file__).resolve().parents[2] / "example_notebooks"
pytestmark = [
    pytest.mark.ui,
    pytest.mark.slow,
]
PNG = b"\x89PNG\r\n\x1a\n"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture
def lab(tmp_path: Path):
    """A JupyterLab server on 127.0.0.1 serving a copy of the example notebooks."""
    require_chromium(Path(CHROMIUM))  # skips, or fails under make test / CI
    root = tmp_path / "work"
    shutil.copytree(EXAMPLES, root)
    token = secrets.token_hex(16)
    port = process.free_port()
    log = open(tmp_path / "lab.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip", "127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         "--allow-root"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ}, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/api/status", params={"token": token}, timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    else:
        raise RuntimeError((tmp_path / "lab.log").read_text()[-3000:])
    yield url, token
    process.stop_pid(proc.pid, grace=5)
    reg = Registry()
    for dep in reg.deployments():
        for v in reg.versions(dep["name"]):
            process.stop_pid(v.get("pid"), grace=3)


def test_quickstart_panel_serves_and_try_it_predicts(lab, artifacts_dir: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, token = lab
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/lab/tree/01_quickstart.ipynb?token={token}")
        page.wait_for_selector(".jp-Notebook", timeout=120_000)
        expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first).to_be_visible(
            timeout=120_000)
        expect(page.locator(".jp-StatusBar-TextItem", has_text="Idle").first).to_be_visible(timeout=120_000)
        page.locator(".jp-Notebook").first.click()
        page.locator("[data-command='notebook:restart-run-all']").first.click()
        page.locator(".jp-Dialog button", has_text="Restart").first.click()
        badge = page.locator(".nbdeploy-panel .nbdeploy-badge").first
        try:
            expect(badge).to_have_text("serving", timeout=300_000)
        except AssertionError:
            page.screenshot(path=str(artifacts_dir / "panel-FAILED.png"))
            raise
        news = page.locator(".jp-toast-button", has_text="No")
        if news.count() and news.first.is_visible():
            news.first.click()
        panel = page.locator(".nbdeploy-panel").first
        panel.scroll_into_view_if_needed()
        panel.screenshot(path=str(artifacts_dir / "panel-serving.png"))
        sent = json.loads(panel.locator(".nbdeploy-row textarea").first.input_value())
        panel.locator(".nbdeploy-try button, button.nbdeploy-try").first.click()
        answer = panel.locator(".nbdeploy-answer").first
        expect(answer).to_contain_text("HTTP 200", timeout=60_000)
        text = answer.inner_text()
        panel.screenshot(path=str(artifacts_dir / "panel-try-it.png"))
        panel.locator(".lm-TabBar-tabLabel, .p-TabBar-tabLabel", has_text="Versions").first.click()
        expect(panel.locator("text=◀ serving").first).to_be_visible(timeout=30_000)
        panel.screenshot(path=str(artifacts_dir / "panel-versions.png"))
        panel.locator(".lm-TabBar-tabLabel, .p-TabBar-tabLabel", has_text="Explain").first.click()
        panel.locator("button", has_text="Explain").first.click()
        expect(panel.locator("text=explainer").first).to_be_visible(timeout=120_000)
        # three decoded PNG plots: an empty W.Image renders as an <img> too, so read each src
        plots = panel.locator("img").evaluate_all(
            """imgs => Promise.all(imgs.map(async img => {
                const bytes = new Uint8Array(await (await fetch(img.src)).arrayBuffer());
                return {width: img.naturalWidth, head: Array.from(bytes.slice(0, 8))};
            }))""")
        pngs = [p for p in plots if p["head"] == list(PNG) and p["width"] > 0]
        assert len(pngs) >= 3, plots
        panel.screenshot(path=str(artifacts_dir / "panel-explain.png"))
        browser.close()
    # the answer shown is the prediction the live endpoint gives for the row that was sent
    shown = json.loads(text.split("HTTP 200", 1)[1])
    rows = sent if isinstance(sent, list) else [sent]
    resp = httpx.post(f"{api.endpoint_url('quickstart')}/predict", json={"rows": rows}, timeout=60)
    assert resp.status_code == 200 and shown == resp.json() and len(shown) == len(rows), (shown, resp.text)
    assert Registry().deployment("quickstart")["serving_version"] == 1
