"""The Deployments sidebar in a real JupyterLab, driven in a real browser."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import nbdeploy.api as api
from nbdeploy.registry import Registry
from tests.ui.conftest import Lab, require_chromium

pytestmark = [pytest.mark.ui, pytest.mark.slow]

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
BUILT = Path(__file__).resolve().parents[2] / "src" / "nbdeploy" / "labextension" / "package.json"
WAIT_MS = 90_000


@pytest.fixture
def iris(tmp_path: Path) -> Iterator[str]:
    """'iris' with v1 (ready, stopped) and v2 (serving); every server stopped at the end."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    notebook = tmp_path / "train-iris.ipynb"
    notebook.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4,
                                    "nbformat_minor": 5}))
    X, y = load_iris(return_X_y=True, as_frame=True)
    try:
        api.deploy(LogisticRegression(max_iter=500).fit(X, y), "iris", X, notebook=str(notebook))
        api.deploy(LogisticRegression(max_iter=500, C=0.1).fit(X, y), "iris", X,
                   notebook=str(notebook))
        yield "iris"
    finally:
        for row in Registry().versions("iris"):
            api.stop("iris", row["version"])


@pytest.fixture
def gated_split(tmp_path: Path) -> Iterator[str]:
    """'gated': v1 passed metrics.ipynb, v2 served 12 requests and fires 'p99_ms>0',
    then traffic is split 50/50; every server stopped at the end."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from nbdeploy import monitoring

    X, y = load_iris(return_X_y=True, as_frame=True)
    try:
        api.deploy(LogisticRegression(max_iter=500).fit(X, y), "gated", X,
                   validate=[str(NOTEBOOKS / "metrics.ipynb")])
        dep = api.deploy(LogisticRegression(max_iter=500, C=0.1).fit(X, y), "gated", X)
        for _ in range(12):
            dep.predict(X.head(2))
        monitoring.set_alerts("gated", ["p99_ms>0"])
        api.split("gated", {1: 50, 2: 50})
        yield "gated"
    finally:
        for row in Registry().versions("gated"):
            api.stop("gated", row["version"])


@pytest.fixture
def expect() -> Iterator[Any]:
    """Playwright's expect, waiting up to WAIT_MS (JupyterLab loads slowly on 2 cores)."""
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    try:
        yield expect
    finally:
        expect.set_options(timeout=5_000)


def _open_sidebar(browser: Any, lab: Lab) -> Any:
    if not BUILT.exists():
        pytest.fail("the labextension is not built: run `make labextension` first")
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(WAIT_MS)
    page.goto(lab.lab_url())
    page.locator('.jp-SideBar [data-id="nbdeploy-deployments"]').click()
    page.locator("#nbdeploy-deployments").wait_for(state="visible")
    return page


def test_sidebar_lists_follows_and_rolls_back(
    browser: Any, lab: Lab, iris: str, artifacts_dir: Path, expect: Any
) -> None:
    page = _open_sidebar(browser, lab)
    row = page.locator('#nbdeploy-deployments [data-deployment="iris"]')
    badge = row.locator(".nbd-deployment-head .nbd-badge")

    # listed: serving v2, with its endpoint; expanded: both versions and their lineage
    expect(badge).to_have_text("serving")
    expect(row.locator(".nbd-serving-version")).to_have_text("v2")
    endpoint = api.get("iris").endpoint  # the stable URL, not a version's own port
    assert endpoint != api.get("iris").url
    expect(row.locator(".nbd-endpoint")).to_have_text(endpoint)
    row.locator(".nbd-deployment-head").click()
    versions = row.locator(".nbd-version")
    expect(versions).to_have_count(2)
    expect(row.locator('.nbd-version[data-version="1"] .nbd-badge').first).to_have_text("stopped")
    expect(row.locator('.nbd-version[data-version="2"] .nbd-lineage')).to_contain_text(
        "train-iris.ipynb")
    page.screenshot(path=str(artifacts_dir / "sidebar-listed.png"))

    # stopped behind the sidebar's back: the badge follows without a reload
    api.stop("iris")
    expect(badge).to_have_text(re.compile(r"^(stopped|down)$"))

    # rollback from the sidebar, confirmed in the dialog
    row.locator('.nbd-actions [data-action="rollback"]').click()
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_contain_text("Roll iris back from v2")
    dialog.locator(".jp-Dialog-button.jp-mod-accept").click()
    expect(row.locator(".nbd-serving-version")).to_have_text("v1")
    expect(badge).to_have_text("serving")
    page.screenshot(path=str(artifacts_dir / "sidebar-after-rollback.png"))

    assert Registry().deployment("iris")["serving_version"] == 1
    url = api.get("iris").endpoint
    assert url == endpoint  # rollback keeps the stable URL
    assert httpx.get(f"{url}/metadata", timeout=10).json()["version"] == 1

    # the palette command opens the selected deployment's API docs in a new tab
    item = _palette_item(page, "nbdeploy: Open deployment docs")
    item.wait_for(state="visible")
    with page.context.expect_page() as opened:
        item.click()
    docs = opened.value
    docs.wait_for_load_state()
    assert docs.url == f"{url}/"


def _palette_item(page: Any, label: str) -> Any:
    """Open the command palette, search ``label`` and return its (single) item."""
    page.keyboard.press("Control+Shift+C")
    search = page.locator(".lm-CommandPalette-input")
    search.fill(label)
    return page.locator(".lm-CommandPalette-item", has_text=label)


def test_toolbar_button_inserts_a_deploy_cell_and_palette_has_commands(
    browser: Any, lab: Lab, artifacts_dir: Path, expect: Any
) -> None:
    notebook = {
        "cells": [{"cell_type": "code", "execution_count": None, "id": "c1", "metadata": {},
                   "outputs": [], "source": "best_clf = train(X_train, y_train)"}],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                    "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    }
    (lab.root / "scratch.ipynb").write_text(json.dumps(notebook))
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(WAIT_MS)
    page.goto(f"{lab.url}/lab/tree/scratch.ipynb?token={lab.token}")
    editor = page.locator(".jp-Notebook .jp-Cell").first.locator(".cm-content")
    expect(editor).to_contain_text("best_clf")
    editor.click()
    page.keyboard.press("Control+Home")  # cursor on `best_clf`
    page.locator(".jp-NotebookPanel-toolbar .nbd-deploy-button").click()
    cells = page.locator(".jp-Notebook .jp-Cell")
    expect(cells).to_have_count(2)
    lines = cells.nth(1).locator(".cm-line")
    expect(lines).to_have_count(2)
    expect(lines.nth(0)).to_have_text("%load_ext nbdeploy")  # runs in a fresh kernel too
    expect(lines.nth(1)).to_have_text("%deploy best_clf --name best-clf --sample X_train")
    page.screenshot(path=str(artifacts_dir / "notebook-deploy-cell.png"))

    page.keyboard.press("Escape")
    _palette_item(page, "nbdeploy")
    items = page.locator(".lm-CommandPalette-item")
    refresh = items.filter(has_text="nbdeploy: Refresh deployments")
    expect(refresh).to_be_visible()
    expect(refresh).not_to_have_class(re.compile(r"\blm-mod-disabled\b"))
    # nothing is deployed, so there is no deployment whose docs could open
    docs = items.filter(has_text="nbdeploy: Open deployment docs")
    expect(docs).to_have_class(re.compile(r"\blm-mod-disabled\b"))


def test_sidebar_shows_split_alerts_validation_and_confirms_promote_and_stop(
    browser: Any, lab: Lab, gated_split: str, artifacts_dir: Path, expect: Any
) -> None:
    page = _open_sidebar(browser, lab)
    row = page.locator('#nbdeploy-deployments [data-deployment="gated"]')
    head = row.locator(".nbd-deployment-head")

    # the row: split, and the alert state (v2's p99 is above 0 over 12 requests)
    expect(row.locator(".nbd-split")).to_have_text("split v1 50% · v2 50%")
    expect(head.locator(".nbd-alerts")).to_have_text("1 alert")
    assert "p99 latency" in (head.locator(".nbd-alerts").get_attribute("title") or "")

    # expanded: v1's validation notebook with its recorded metrics
    head.click()
    v1 = row.locator('.nbd-version[data-version="1"]')
    run = v1.locator(".nbd-run")
    expect(run).to_have_count(1)
    expect(run.locator(".nbd-run-name")).to_have_text("metrics.ipynb")
    expect(run.locator(".nbd-run-status")).to_have_text("passed")
    expect(run).to_contain_text("score=1")
    expect(row.locator('.nbd-version[data-version="2"]')).to_contain_text("no validation notebooks")
    page.screenshot(path=str(artifacts_dir / "sidebar-split-alerts-validation.png"))

    # promote v1 through its confirmation dialog: it serves alone, the split ends
    v1.locator('[data-action="promote"]').click()
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_contain_text("Serve gated v1 instead of v2?")
    dialog.locator(".jp-Dialog-button.jp-mod-accept").click()
    expect(row.locator(".nbd-serving-version")).to_have_text("v1")
    expect(row.locator(".nbd-split")).to_have_count(0)
    assert Registry().deployment("gated")["serving_version"] == 1
    assert not Registry().deployment("gated").get("split")

    # stop: cancelling the dialog changes nothing, accepting it stops the server
    stop = row.locator('.nbd-actions [data-action="stop"]')
    stop.click()
    expect(dialog).to_contain_text("Stop the server of gated v1?")
    dialog.locator(".jp-Dialog-button:not(.jp-mod-accept)").click()
    expect(dialog).to_have_count(0)
    assert api.get("gated:1").status() == "serving"
    stop.click()
    dialog.locator(".jp-Dialog-button.jp-mod-accept").click()
    badge = head.locator(".nbd-badge").first
    expect(head.locator(".nbd-busy")).to_have_count(0)  # the stop finished
    expect(badge).to_have_text(re.compile(r"^(stopped|down)$"))
    assert api.get("gated:1").status() in ("stopped", "down")
    page.screenshot(path=str(artifacts_dir / "sidebar-after-promote-and-stop.png"))

    # with the sidebar closed nothing polls: the palette's Refresh asks the server itself
    page.locator('.jp-SideBar [data-id="nbdeploy-deployments"]').click()
    expect(page.locator("#nbdeploy-deployments")).to_be_hidden()
    item = _palette_item(page, "nbdeploy: Refresh deployments")
    item.wait_for(state="visible")
    with page.expect_request(lambda r: r.url.split("?")[0].endswith("/nbdeploy/api/deployments")):
        item.click()


def test_missing_chromium_fails_when_the_ui_tests_are_required(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "chromium"
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("NBDEPLOY_REQUIRE_UI", "1")
    with pytest.raises(pytest.fail.Exception, match="required"):
        require_chromium(missing)
    monkeypatch.setenv("NBDEPLOY_REQUIRE_UI", "0")
    with pytest.raises(pytest.skip.Exception, match="make ui-deps"):
        require_chromium(missing)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        require_chromium(missing)
