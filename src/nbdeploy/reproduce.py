"""Reproduce: re-run a version's training notebook and check it rebuilds the deployed model.

The recorded notebook runs in a fresh papermill kernel with ``NBDEPLOY_REPRODUCE_DIR`` set,
so its ``deploy(...)`` call saves the rebuilt model instead of deploying it. The rebuilt and
the deployed model then predict the version's stored reference sample; the verdict (exact,
within tolerance, differs, failed) is stored in the version's lineage and in the audit log."""

from __future__ import annotations

import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pandas as pd

from nbdeploy import config, lineage
from nbdeploy.errors import NbdeployError
from nbdeploy.intercept import NOTEBOOK_ENV, REPRODUCE_ENV, RETRAIN_ENV, run_training
from nbdeploy.registry import Registry

__all__ = ["ReproduceResult", "ReproduceWarning", "compare_predictions", "reproduce", "training_notebook"]


class ReproduceWarning(UserWarning):
    """The training notebook changed since the version was deployed."""


@dataclass
class ReproduceResult:
    """The verdict of one reproduce run and what it is based on."""

    name: str
    version: int
    status: str  # "exact" | "within-tolerance" | "differs" | "failed"
    verdict: str
    notebook: str
    executed_notebook: str | None = None
    max_abs_diff: float | None = None
    rows_differing: int | None = None
    rows: int | None = None
    tolerance: float = 0.0
    notebook_changed: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the notebook rebuilt the deployed model (exactly or within tolerance)."""
        return self.status in ("exact", "within-tolerance")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (stored in the version's lineage)."""
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.name} v{self.version}: {self.verdict}"


def training_notebook(row: dict[str, Any]) -> Path:
    """The training notebook recorded for a version, or an error saying what to do."""
    lin = row.get("lineage") or {}
    where = f"{row['name']} v{row['version']}"
    if not lin.get("notebook"):
        raise NbdeployError(
            f"{where} was deployed outside a notebook, so there is no training notebook to re-run; "
            "pass notebook=... when deploying (nbdeploy.deploy(..., notebook='train.ipynb')) or "
            "deploy from a Jupyter notebook."
        )
    path = Path(lin["notebook"])
    if not path.is_file():
        commit = lin.get("git_commit")
        hint = f" (e.g. `git checkout {commit} -- {path}`)" if commit else ""
        raise NbdeployError(
            f"the training notebook of {where} is missing: {path} not found. Restore it{hint} "
            "and run again."
        )
    return path


def _predictor(model: Any) -> Any:
    """Wrap models that need their own input type (xgboost Booster wants a DMatrix)."""
    if type(model).__name__ == "Booster" and type(model).__module__.startswith("xgboost"):
        import xgboost as xgb

        return lambda frame: model.predict(xgb.DMatrix(frame))
    if hasattr(model, "predict"):
        return model.predict
    if callable(model):
        return model
    raise NbdeployError(f"cannot predict with a {type(model).__name__}: it has no predict() and is not "
                        "callable; deploy a model object or a function")


def _outputs(model: Any, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    out = {"predict": np.asarray(_predictor(model)(frame))}
    if hasattr(model, "predict_proba"):
        try:
            out["predict_proba"] = np.asarray(model.predict_proba(frame))
        except (AttributeError, NotImplementedError):  # e.g. SVC(probability=False)
            pass
    return out


def compare_predictions(
    deployed: Any, rebuilt: Any, reference: pd.DataFrame, *, tolerance: float = 0.0,
    classification: bool = False,
) -> dict[str, Any]:
    """Compare two models' predict (and predict_proba) on ``reference``.

    Returns status, verdict, max_abs_diff (over numeric outputs; class labels count only as
    equal or not) and rows_differing (rows where any output differs by more than ``tolerance``)."""
    want, got = _outputs(deployed, reference), _outputs(rebuilt, reference)
    rows = len(reference)
    bad = np.zeros(rows, dtype=bool)
    exact, max_diff = True, None
    for key, a in want.items():
        if key not in got or got[key].shape != a.shape:
            return {"status": "differs", "verdict": f"differs ({key} output missing or of another shape: "
                    f"{a.shape} vs {got[key].shape if key in got else 'none'}, {rows} of {rows} rows)",
                    "max_abs_diff": None, "rows_differing": rows, "rows": rows}
        b = got[key]
        a2, b2 = a.reshape(rows, -1), b.reshape(rows, -1)
        numeric = np.issubdtype(a.dtype, np.number) and np.issubdtype(b.dtype, np.number)
        if numeric and not (classification and key == "predict"):
            fa, fb = a2.astype(float), b2.astype(float)
            diff = np.where(np.isnan(fa) & np.isnan(fb), 0.0, np.abs(fa - fb))
            diff = np.nan_to_num(diff, nan=np.inf)
            exact &= bool((diff == 0).all())
            max_diff = max(max_diff or 0.0, float(diff.max(initial=0.0)))
            bad |= (diff > tolerance).any(axis=1)
        else:
            unequal = (a2 != b2).any(axis=1)
            exact &= not unequal.any()
            bad |= unequal
    n = int(bad.sum())
    shown = f"max abs diff {max_diff:.3g}" if max_diff is not None else "labels differ"
    if exact:
        status, verdict = "exact", "exact"
    elif n == 0:
        status, verdict = "within-tolerance", f"within tolerance ({shown})"
    else:
        status, verdict = "differs", f"differs ({shown}, {n} of {rows} rows)"
    return {"status": status, "verdict": verdict, "max_abs_diff": max_diff, "rows_differing": n, "rows": rows}


def _rebuild(
    path: Path, parameters: dict[str, Any], name: str, out_dir: Path, timeout: float
) -> tuple[Any, Any]:
    """Run the notebook in reproduce mode; (rebuilt model or None, the TrainingRun)."""
    captured = out_dir / "captured"
    run = run_training(
        path, output_path=out_dir / f"reproduce-{path.name}", parameters=parameters, timeout=timeout,
        env={REPRODUCE_ENV: str(captured), NOTEBOOK_ENV: str(path), RETRAIN_ENV: ""},
        report=captured / "deploys.jsonl",
    )
    pickled = captured / f"{name}.pkl"
    return (cloudpickle.loads(pickled.read_bytes()) if pickled.is_file() else None), run


def reproduce(ref: str, *, tolerance: float = 0.0, timeout: float = 900) -> ReproduceResult:
    """Re-run the training notebook of ``name[:version]`` and compare its model with the deployed one.

    ``tolerance`` is the largest absolute difference in numeric outputs still counted as the
    same; ``timeout`` is per notebook cell (seconds). The verdict is stored in the version's
    lineage under ``reproduce`` and logged as a ``reproduce`` audit event."""
    from nbdeploy import api

    name, version = api.parse_ref(ref)
    reg = Registry()
    row = reg.version(name, version)
    v = row["version"]
    path = training_notebook(row)
    lin = row.get("lineage") or {}
    result = ReproduceResult(name, v, "failed", "failed", str(path), tolerance=tolerance)
    recorded, current = lin.get("notebook_sha256"), lineage.file_sha256(path)
    if recorded and current != recorded:
        result.notebook_changed = True
        msg = (f"{path.name} changed since {name} v{v} was deployed (sha256 {str(current)[:12]} ≠ recorded "
               f"{recorded[:12]}): the verdict is about today's notebook, not the one that trained v{v}")
        result.warnings.append(msg)
        warnings.warn(msg, ReproduceWarning, stacklevel=2)

    parent = config.runs_dir() / name / f"v{v}"
    parent.mkdir(parents=True, exist_ok=True)
    out_dir = Path(tempfile.mkdtemp(prefix=time.strftime("reproduce-%Y%m%d-%H%M%S-"), dir=parent))
    rebuilt, run = _rebuild(path, dict(lin.get("parameters") or {}), name, out_dir, timeout)
    result.executed_notebook = run.output_path
    if rebuilt is None:
        if not run.ok:
            why = f"the notebook failed before deploying: {run.reason}; see {run.output_path}"
        else:
            others = sorted({d["name"] for d in run.deploys} - {name})
            why = (f"the notebook ran but never deployed {name!r}"
                   + (f" (it deployed {', '.join(others)})" if others else "; check its deploy cell"))
        result.verdict = f"failed ({why})"
    else:
        if not run.ok:
            result.warnings.append(f"the notebook failed after its deploy call: {run.reason}")
        deployed, reference = api.load_model(f"{name}:{v}")
        cmp = compare_predictions(deployed, rebuilt, reference, tolerance=tolerance,
                                  classification=row.get("task") == "classification")
        result.status, result.verdict = cmp["status"], cmp["verdict"]
        result.max_abs_diff, result.rows_differing, result.rows = (
            cmp["max_abs_diff"], cmp["rows_differing"], cmp["rows"])

    record = {**result.to_dict(), "at": time.time(), "user": config.user()}
    fresh = reg.version(name, v).get("lineage") or {}
    reg.update_version(name, v, lineage={**fresh, "reproduce": record})
    reg.log_event("reproduce", name=name, version=v, notebook=str(path),
                  detail={"status": result.status, "verdict": result.verdict,
                          "executed_notebook": result.executed_notebook,
                          "notebook_changed": result.notebook_changed})
    return result
