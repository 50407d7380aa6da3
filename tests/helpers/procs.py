"""Process helpers shared by the tests that start and kill servers."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from nbdeploy.serve.process import descendants


def wait_until(check: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy (a wait, not a timed assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def family(pid: int) -> list[int]:
    """``pid`` and all its descendants (BentoML workers run in sessions of their own)."""
    return [pid, *descendants(pid)]
