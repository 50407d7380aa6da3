"""Background deploys: the magic returns at once while a thread captures, builds and serves."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

_JOBS: dict[str, DeployJob] = {}


class DeployJob:
    """One deploy running in a daemon thread, reporting to a panel."""

    def __init__(self, name: str, run: Callable[[Callable[[str, str], None]], Any], panel: Any) -> None:
        self.name = name
        self.panel = panel
        self.result: Any = None
        self.error: BaseException | None = None
        self._run = run
        self.thread = threading.Thread(target=self._target, daemon=True, name=f"nbdeploy-deploy-{name}")

    def start(self) -> DeployJob:
        _JOBS[self.name] = self
        self.thread.start()
        return self

    def _target(self) -> None:
        try:
            self.result = self._run(self.panel.on_progress)
        except BaseException as exc:  # shown in the panel with what to do next
            self.error = exc
            self.panel.fail(exc)
        else:
            self.panel.done(self.result)

    def wait(self, timeout: float | None = 600) -> Any:
        """Block until the deploy ends; return the Deployment or raise its error."""
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise TimeoutError(f"deploy of {self.name} still running after {timeout} s")
        if self.error is not None:
            raise self.error
        return self.result


def wait(name: str | None = None, timeout: float | None = 600) -> Any:
    """Wait for the background deploy of ``name`` (default: the latest one) to finish."""
    if not _JOBS:
        raise LookupError("no background deploy was started in this kernel")
    job = _JOBS[name] if name else list(_JOBS.values())[-1]
    return job.wait(timeout)


def running() -> list[str]:
    """Names of deploys still running in this kernel."""
    return [n for n, j in _JOBS.items() if j.thread.is_alive()]
