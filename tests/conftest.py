"""Shared fixtures: every test gets its own NBDEPLOY_HOME and BENTOML_HOME."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point nbdeploy's registry and BentoML's store at a fresh temporary folder."""
    base = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("NBDEPLOY_HOME", str(base / "nbdeploy"))
    # BentoML caches its store location per process, so one store serves the whole session.
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path_factory.getbasetemp() / "bentoml"))
    monkeypatch.setenv("BENTOML_DO_NOT_TRACK", "true")
    monkeypatch.setenv("NBDEPLOY_USER", "tester")
    return base


@pytest.fixture
def artifacts_dir() -> Path:
    """Folder kept after the run for screenshots and reports."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
