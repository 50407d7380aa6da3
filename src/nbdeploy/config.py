"""Where nbdeploy keeps its state, and the settings read from the environment."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"


def home() -> Path:
    """The nbdeploy state folder: ``$NBDEPLOY_HOME`` or ``~/.nbdeploy`` (created on demand)."""
    path = Path(os.environ.get("NBDEPLOY_HOME") or Path.home() / ".nbdeploy").expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def registry_path() -> Path:
    """The SQLite registry file."""
    return home() / "registry.sqlite"


def runs_dir() -> Path:
    """Folder for per-version artifacts: executed notebooks, logs, plots."""
    path = home() / "runs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def logs_dir() -> Path:
    """Folder for server logs and prediction logs."""
    path = Path(os.environ.get("NBDEPLOY_LOG_DIR") or home() / "logs")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        from nbdeploy.errors import NbdeployError

        raise NbdeployError(
            f"cannot use {path} for logs ({exc.strerror}); point NBDEPLOY_LOG_DIR at a writable "
            "folder (or fix the permissions) and try again."
        ) from None
    return path


def user() -> str:
    """Who is acting, for the audit log."""
    for var in ("NBDEPLOY_USER", "JUPYTERHUB_USER", "USER", "LOGNAME"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        import getpass

        return getpass.getuser()
    except Exception:  # pragma: no cover - no passwd entry
        return "unknown"


def registry_timeout() -> float:
    """Seconds a write waits for another process's registry lock ($NBDEPLOY_REGISTRY_TIMEOUT)."""
    try:
        return float(os.environ.get("NBDEPLOY_REGISTRY_TIMEOUT", "15"))
    except ValueError:
        return 15.0
