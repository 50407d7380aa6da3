"""Record metrics from a validation notebook and read them back from the executed notebook.

A metric is displayed as a custom mimetype output, so it survives in the saved ``.ipynb``
and nbdeploy can read it back with nbformat alone (no scrapbook, no kernel). This module
runs inside validation kernels: it imports nothing heavy at module level.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import nbformat

MIMETYPE = "application/vnd.nbdeploy.metrics+json"

__all__ = ["MIMETYPE", "read_metrics", "record"]


def _plain(value: Any) -> Any:
    """Turn numpy scalars (and 0-d arrays) into the Python value they hold."""
    if isinstance(value, (bool, int, float, str)):
        return value
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "ndim", 0) == 0:
        try:
            return item()
        except (TypeError, ValueError):
            return value
    return value


def _checked(name: Any, value: Any) -> float | int | str | bool:
    """Validate a metric name and value; raise TypeError/ValueError saying what to pass."""
    if not isinstance(name, str) or not name.strip():
        raise TypeError(
            f"metric name must be a non-empty string, got {name!r}: "
            "call nbdeploy.record('auc', 0.97)"
        )
    value = _plain(value)
    if not isinstance(value, (bool, int, float, str)):
        raise TypeError(
            f"metric {name!r} must be a number, a string or a bool, got "
            f"{type(value).__name__}: record one value per name, e.g. float(score)"
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"metric {name!r} is {value}: record a finite number")
    json.dumps(value)  # bools, ints, finite floats and str always serialize
    return value


def _text(name: str, value: float | int | str | bool) -> str:
    """The text/plain fallback shown where the custom mimetype is not rendered."""
    return f"{name} = {value!r}" if isinstance(value, str) else f"{name} = {value}"


def record(name: str, value: float | int | str | bool) -> None:
    """Record one metric of a validation run; nbdeploy reads it back from the executed notebook."""
    value = _checked(name, value)
    text = _text(name, value)
    from IPython.core.interactiveshell import InteractiveShell

    if InteractiveShell.initialized():
        from IPython.display import display

        display({MIMETYPE: {name: value}, "text/plain": text}, raw=True)
    else:
        print(text)


def _load(nb: nbformat.NotebookNode | str | Path) -> nbformat.NotebookNode:
    """Accept a notebook object or the path of an .ipynb file."""
    if not isinstance(nb, (str, Path)):
        return nb
    import nbformat

    path = Path(nb)
    if not path.is_file():
        raise FileNotFoundError(f"no notebook at {path}: pass the executed notebook's path")
    return nbformat.read(path, as_version=4)


def read_metrics(nb: nbformat.NotebookNode | str | Path) -> dict[str, Any]:
    """Every metric recorded in an executed notebook, in execution order (later records win)."""
    metrics: dict[str, Any] = {}
    for cell in _load(nb).get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") not in ("display_data", "execute_result"):
                continue
            payload = output.get("data", {}).get(MIMETYPE)
            if isinstance(payload, str):  # some writers store JSON mimetypes as text
                try:
                    payload = json.loads(payload)
                except json.JSONDecodeError:
                    continue
            if isinstance(payload, dict):
                metrics.update(payload)
    return metrics
