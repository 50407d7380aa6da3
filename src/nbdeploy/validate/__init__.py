"""Validation gate: run papermill notebooks against a model, read back metrics, check them.

``record`` is imported eagerly because it runs inside validation kernels and is cheap;
everything else (papermill, nbclient) loads on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from nbdeploy.validate.record import MIMETYPE, read_metrics, record

__all__ = [
    "MIMETYPE",
    "BatchResult",
    "RunResult",
    "check",
    "compare",
    "expand_grid",
    "read_metrics",
    "record",
    "require_better",
    "run_batch",
    "run_notebook",
    "write_html_report",
]

_LAZY = {
    "RunResult": "runner",
    "run_notebook": "runner",
    "BatchResult": "batch",
    "expand_grid": "batch",
    "run_batch": "batch",
    "check": "requirements",
    "compare": "requirements",
    "require_better": "requirements",
    "write_html_report": "report",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f"nbdeploy.validate.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'nbdeploy.validate' has no attribute {name!r}")
