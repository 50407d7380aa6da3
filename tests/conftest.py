"""Shared fixtures: every test gets its own NBDEPLOY_HOME and BENTOML_HOME."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

SESSION_BENTOML_HOME = ""  # set in pytest_configure: one BentoML store per test process
SESSION_HOME = ""  # the NBDEPLOY_HOME of module-scoped fixtures, emptied at session end
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(autouse=True)
def isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """Point nbdeploy's registry and BentoML's store at a fresh temporary folder."""
    base = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("NBDEPLOY_HOME", str(base / "nbdeploy"))
    # BentoML caches its store location per process, so one store serves the whole session.
    monkeypatch.setenv("BENTOML_HOME", SESSION_BENTOML_HOME)
    monkeypatch.setenv("BENTOML_DO_NOT_TRACK", "true")
    monkeypatch.setenv("NBDEPLOY_USER", "tester")
    yield base
    _stop_everything(base / "nbdeploy" / "registry.sqlite")
    _check_one_store()


def _check_one_store() -> None:
    """Fail loudly when a test pinned BentoML to another store: kernels and servers started
    later would save into the session store while this process reads from the other one."""
    import sys

    if "bentoml" in sys.modules:
        from nbdeploy.serve.process import bentoml_home

        assert bentoml_home() == SESSION_BENTOML_HOME, (
            f"BentoML's store moved to {bentoml_home()}; tests must use the session store")


def _stop_everything(registry: Path) -> None:
    """Stop every model server and router a test left running (they outlive their starter)."""
    if not registry.exists():
        return
    from nbdeploy.registry import Registry
    from nbdeploy.serve.process import stop_pid

    reg = Registry(registry)
    for dep in reg.deployments():
        stop_pid(dep.get("router_pid"), grace=3)
        for v in reg.versions(dep["name"]):
            stop_pid(v.get("pid"), grace=3)


@pytest.fixture(scope="module")
def iris_model():
    """A fitted iris LogisticRegression and its sample (the security tests' model)."""
    from sklearn.linear_model import LogisticRegression

    from tests import models

    X, y = models.iris()
    return LogisticRegression(max_iter=500).fit(X, y), X


@pytest.fixture
def artifacts_dir() -> Path:
    """Folder kept after the run for screenshots and reports."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def pytest_configure(config: pytest.Config) -> None:
    # Module-scoped fixtures run before the per-test home is set: give the whole session a
    # private home too, so nothing ever touches the user's ~/.nbdeploy or ~/bentoml.
    import tempfile

    session_home = Path(tempfile.mkdtemp(prefix="nbdeploy-tests-"))
    os.environ["NBDEPLOY_HOME"] = str(session_home / "nbdeploy")
    global SESSION_BENTOML_HOME, SESSION_HOME
    SESSION_HOME = os.environ["NBDEPLOY_HOME"]
    SESSION_BENTOML_HOME = os.environ["BENTOML_HOME"] = str(session_home / "bentoml")
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # Servers and routers that module-scoped fixtures started in the session home: none may
    # outlive the run, whatever a fixture's own teardown forgot.
    if SESSION_HOME:
        _stop_everything(Path(SESSION_HOME) / "registry.sqlite")
