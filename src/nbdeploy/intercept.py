"""The contract between a driver (``retrain``, ``reproduce``) and the training notebook it runs.

The driver executes the notebook with papermill in a fresh kernel and tells the kernel, through
environment variables, what the ``deploy(...)`` call inside the notebook must do:

- ``NBDEPLOY_REPRODUCE_DIR=<dir>``: deploy nothing; pickle the model (and its sample) to
  ``<dir>/<name>.pkl`` / ``<dir>/<name>.sample.pkl`` and let the notebook carry on;
- ``NBDEPLOY_RETRAIN_OPTIONS=<json>``: deploy as usual, but through the gate of the serving
  version (its validation notebooks, requirements and parameters, merged into the call's own).

``api.deploy`` calls :func:`intercept` first; with neither variable set it changes nothing."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cloudpickle
import nbformat
import papermill

REPRODUCE_ENV = "NBDEPLOY_REPRODUCE_DIR"
RETRAIN_ENV = "NBDEPLOY_RETRAIN_OPTIONS"
NOTEBOOK_ENV = "NBDEPLOY_NOTEBOOK"
GATE_KEYS = ("validate", "require", "require_better", "params")


class Captured:
    """What ``deploy`` returns in a reproduce run: nothing was deployed, the model was saved."""

    version = None
    url = None
    endpoint = None

    def __init__(self, name: str, model: Any, path: Path) -> None:
        self.name = name
        self.model = model
        self.path = path

    def status(self) -> str:
        """Always ``captured``: a reproduce run never deploys."""
        return "captured"

    def predict(self, rows: Any) -> Any:
        """Predict locally with the captured model, so later notebook cells still run."""
        return self.model.predict(rows) if hasattr(self.model, "predict") else self.model(rows)

    def predict_proba(self, rows: Any) -> Any:
        """Class probabilities from the captured model."""
        return self.model.predict_proba(rows)

    def summary(self) -> dict[str, Any]:
        """A summary in the shape of ``Deployment.summary`` (no version, no endpoint)."""
        return {"name": self.name, "version": None, "status": "captured", "endpoint": None,
                "captured_to": str(self.path)}

    def __repr__(self) -> str:
        return f"<{self.name}: captured for reproduce in {self.path}, not deployed>"


def _norm(path: Any) -> str:
    return str(Path(path).resolve())


def merge_gate(own: dict[str, Any], recorded: dict[str, Any]) -> dict[str, Any]:
    """The call's gate options plus the recorded gate; on a conflict the recorded gate wins,
    so a retrained version faces at least the checks the serving version passed."""
    validate = [*(own.get("validate") or []), *(recorded.get("validate") or [])]
    seen: dict[str, Any] = {}
    for path in validate:
        seen.setdefault(_norm(path), path)
    better = list(dict.fromkeys([*(own.get("require_better") or []),
                                 *(recorded.get("require_better") or [])]))
    return {
        "validate": list(seen.values()) or None,
        "require": {**(own.get("require") or {}), **(recorded.get("require") or {})} or None,
        "require_better": better or None,
        "params": {**(own.get("params") or {}), **(recorded.get("params") or {})} or None,
    }


def _note(report: str | None, entry: dict[str, Any]) -> None:
    """Tell the driver which deploy calls the notebook made (one JSON line each)."""
    if report:
        with open(report, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry, default=str) + "\n")


def intercept(model: Any, name: str, sample: Any, options: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """Called first by ``api.deploy``: returns ``(result, options)``.

    ``result`` is not None in a reproduce run (deploy must return it at once); otherwise
    ``options`` holds the gate options (validate, require, require_better, params) to use,
    unchanged unless a retrain run asked for its gate."""
    folder = os.environ.get(REPRODUCE_ENV)
    if folder:
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{name}.pkl"
        path.write_bytes(cloudpickle.dumps(model))
        (out / f"{name}.sample.pkl").write_bytes(cloudpickle.dumps(sample))
        _note(str(out / "deploys.jsonl"), {"name": name, "captured": str(path)})
        return Captured(name, model, path), options
    raw = os.environ.get(RETRAIN_ENV)
    if not raw:
        return None, options
    wanted = json.loads(raw)
    if wanted.get("name") != name:  # another deployment made by the same notebook: untouched
        _note(wanted.get("report"), {"name": name, "gated": False})
        return None, options
    merged = merge_gate(options, wanted)
    _note(wanted.get("report"), {"name": name, "gated": True, "options": merged})
    return None, merged


@dataclass
class TrainingRun:
    """The outcome of executing a training notebook: did every cell run, and where it is."""

    notebook: str
    output_path: str
    ok: bool
    reason: str | None = None
    deploys: list[dict[str, Any]] = field(default_factory=list)


def _has_parameters_cell(nb: nbformat.NotebookNode) -> bool:
    return any("parameters" in c.get("metadata", {}).get("tags", []) for c in nb.cells)


def _read_report(report: Path | None) -> list[dict[str, Any]]:
    if not report or not report.is_file():
        return []
    return [json.loads(line) for line in report.read_text().splitlines() if line.strip()]


def run_training(
    notebook: str | Path, *, output_path: Path, parameters: dict[str, Any] | None = None,
    env: dict[str, str] | None = None, timeout: float | None = 900, report: Path | None = None,
) -> TrainingRun:
    """Execute a training notebook in a fresh kernel whose environment adds ``env``.

    The kernel runs in the notebook's folder; ``timeout`` is per cell. Notebook faults come
    back as ``ok=False`` with a reason; ``report`` is the JSON-lines file :func:`intercept`
    writes (the deploy calls it lists are returned in ``deploys``)."""
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    from nbdeploy.errors import NbdeployError
    from nbdeploy.serve.process import bentoml_home
    from nbdeploy.validate.fastkernel import kernel_manager
    from nbdeploy.validate.runner import ENGINE, TAG_HINT

    path, output_path = Path(notebook).resolve(), Path(output_path)
    if not path.is_file():
        raise NbdeployError(f"training notebook not found: {path}; restore it or check the path.")
    nb = nbformat.read(str(path), as_version=4)
    if parameters and not _has_parameters_cell(nb):
        raise NbdeployError(
            f"{path.name} has no cell tagged 'parameters', so {', '.join(parameters)} cannot be "
            f"injected: {TAG_HINT}"
        )
    output_path.parent.mkdir(parents=True, exist_ok=True)
    log_path = output_path.with_suffix(".kernel.log")
    # The kernel saves models into the BentoML store this process reads them back from.
    extra_env = {"BENTOML_HOME": bentoml_home(), **(env or {})}
    manager = kernel_manager(log_path, extra_env)
    run = TrainingRun(str(path), str(output_path), ok=False)
    try:
        papermill.execute_notebook(
            str(path), str(output_path), parameters=dict(parameters or {}), engine_name=ENGINE,
            request_save_on_cell_execute=False, progress_bar=False, execution_timeout=timeout,
            resources={"metadata": {"path": str(path.parent)}}, shutdown_kernel="immediate",
            kernel_manager_class=manager,
        )
        run.ok = True
    except PapermillExecutionError as exc:
        run.reason = f"{exc.ename}: {' '.join(str(exc.evalue).split())[:300]} (cell {exc.cell_index})"
    except CellTimeoutError:
        run.reason = f"a cell ran longer than {timeout:g} s; raise timeout=... or make it faster"
    except DeadKernelError:
        run.reason = f"the kernel died (crash or out of memory); its stderr is in {log_path}"
    except Exception as exc:  # kernel start failures and the like
        run.reason = f"could not run {path.name}: {type(exc).__name__}: {exc}; see {log_path}"
    if str(log_path) not in (run.reason or ""):  # kept only when the reason points to it
        log_path.unlink(missing_ok=True)
    run.deploys = _read_report(report)
    return run
