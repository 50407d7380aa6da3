"""Lineage: where a version came from (notebook, its hash, git commit, data fingerprint)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pandas as pd

from nbdeploy import config


def current_notebook() -> str | None:
    """Path of the notebook the kernel runs, when Jupyter tells us (else None)."""
    try:
        from IPython import get_ipython

        ip = get_ipython()
        if ip is not None:
            session = ip.user_ns.get("__session__") or ip.user_ns.get("__vsc_ipynb_file__")
            if session:
                return str(session)
    except Exception:
        pass
    return os.environ.get("JPY_SESSION_NAME") or os.environ.get("NBDEPLOY_NOTEBOOK")


def file_sha256(path: str | Path) -> str | None:
    """sha256 of a file's bytes, or None when it cannot be read."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def git_commit(path: str | Path) -> str | None:
    """The HEAD commit of the repository holding ``path`` (None outside a repository)."""
    folder = Path(path).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def data_fingerprint(frame: pd.DataFrame) -> str:
    """A stable hash of a DataFrame's values and columns."""
    digest = hashlib.sha256()
    digest.update("|".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).values.tobytes())
    return digest.hexdigest()


def collect(
    sample: pd.DataFrame, *, notebook: str | None = None, extra: dict | None = None
) -> dict[str, Any]:
    """The lineage record stored with a version."""
    notebook = notebook or current_notebook()
    record: dict[str, Any] = {
        "notebook": str(Path(notebook).resolve()) if notebook else None,
        "notebook_sha256": file_sha256(notebook) if notebook else None,
        "git_commit": git_commit(notebook) if notebook else None,
        "data_fingerprint": data_fingerprint(sample),
        "data_rows": len(sample),
        "user": config.user(),
        "created_at": time.time(),
    }
    record.update(extra or {})
    return record
