"""A throwaway work folder for one benchmark run, with nbdeploy/BentoML env restored after."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ENV = ("NBDEPLOY_HOME", "BENTOML_HOME", "BENTOML_DO_NOT_TRACK")


@contextmanager
def restored_env(keys: tuple[str, ...] = ENV) -> Iterator[None]:
    """Put ``keys`` of os.environ back as they were (set or unset) when the block ends."""
    saved = {k: os.environ.get(k) for k in keys}
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def in_workdir(prefix: str, body: Callable[[Path], Any]) -> Any:
    """Run ``body(work)`` in a fresh temp folder; restore the env vars it may set, then delete it."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        with restored_env():
            return body(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
