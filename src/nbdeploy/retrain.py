"""Retrain: re-run the serving version's training notebook with new parameters, through its gate.

The notebook recorded in the serving version's lineage runs in a fresh papermill kernel with
the new parameters (a new data path, another ``C``...). Its own ``deploy(...)`` call then
faces the gate the serving version passed (same validation notebooks, requirements and
notebook parameters, plus ``require_better`` when asked), so a worse model is rejected and
the serving version keeps serving.

A serving version deployed without validation notebooks leaves no gate to reuse: retrain
then refuses before running anything, since the new model would be deployed (and, if the
notebook serves it, promoted) unchecked. ``allow_ungated=True`` (CLI ``--no-gate``) runs it
anyway; the result and the audit event then say ``ungated``."""

from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from nbdeploy import config
from nbdeploy.errors import NbdeployError
from nbdeploy.intercept import NOTEBOOK_ENV, REPRODUCE_ENV, RETRAIN_ENV, run_training
from nbdeploy.registry import Registry
from nbdeploy.reproduce import training_notebook

__all__ = ["gate_options", "retrain"]


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def gate_options(
    name: str, version: int | None = None, *, require_better: bool | list[str] = False
) -> dict[str, Any]:
    """The gate a version passed: its validation notebooks (absolute paths), requirements and
    notebook parameters; ``require_better=True`` adds the metrics it was judged on."""
    from nbdeploy.validate.runner import INJECTED

    reg = Registry()
    row = reg.version(name, version)
    folder = training_notebook(row).parent
    runs = [r for r in reg.validation_runs(name, row["version"]) if r["role"] == "candidate"]
    validate: list[str] = []
    for run in runs:
        path = Path(run["notebook"])
        path = str((path if path.is_absolute() else folder / path).resolve())
        if path not in validate:
            validate.append(path)
    missing = [p for p in validate if not Path(p).is_file()]
    if missing:
        raise NbdeployError(
            f"the validation notebook(s) that gated {name} v{row['version']} are missing: "
            f"{', '.join(missing)}; restore them before retraining."
        )
    summary = row.get("validation") or {}
    require = dict(summary.get("require") or {})
    params = {k: v for k, v in (runs[0]["parameters"] if runs else {}).items() if k not in INJECTED}
    if isinstance(require_better, list):
        better = list(require_better)
    elif require_better:
        metrics = summary.get("metrics") or {}
        better = list(summary.get("require_better") or require or
                      [k for k, v in metrics.items() if _numeric(v)])
        if not better:
            raise NbdeployError(
                f"{name} v{row['version']} recorded no numeric metrics to compare against; deploy it "
                "with validate=[...] notebooks that call nbdeploy.record(...), or pass "
                "require_better=['metric']."
            )
    else:
        better = []
    if better and not validate:
        raise NbdeployError(
            f"require_better needs validation notebooks, but {name} v{row['version']} was deployed "
            "without any; deploy it with validate=[...] first."
        )
    return {"validate": validate, "require": require, "require_better": better, "params": params}


def _outcome(
    reg: Registry, name: str, path: Path, before: int, previous: int, parameters: dict[str, Any],
    run: Any,
) -> dict[str, Any]:
    """What the notebook run did to the deployment: the new version and its fate."""
    new = [v for v in reg.versions(name)
           if v["version"] > before and (v.get("lineage") or {}).get("notebook") == str(path)]
    gated = [d for d in run.deploys if d.get("name") == name]
    if new:
        row = new[-1]
        lin = {**(row.get("lineage") or {}), "parameters": parameters, "retrained_from": previous}
        reg.update_version(name, row["version"], lineage=lin)
        serving = reg.deployment(name)["serving_version"] == row["version"]
        status = "serving" if serving else row["status"]
        reason = row.get("reason")
        if not run.ok:
            reason = "; ".join(filter(None, [reason, f"the notebook failed after deploying: {run.reason}"]))
        return {"new_version": row["version"], "status": status, "reason": reason}
    if not run.ok:
        return {"new_version": None, "status": "notebook-failed",
                "reason": f"the training notebook failed before deploying: {run.reason}; "
                          f"see {run.output_path}"}
    if gated:
        return {"new_version": None, "status": "unchanged",
                "reason": f"the retrained model is identical to v{previous}; nothing new was deployed"}
    others = sorted({d.get("name") for d in run.deploys} - {name})
    where = f"; it deployed {', '.join(map(str, others))} instead" if others else ""
    return {"new_version": None, "status": "no-deploy",
            "reason": f"{path.name} ran to the end but never deployed {name!r}{where}; check its deploy "
                      "cell (is it skipped by a parameter or an if?)"}


def retrain(
    name: str, *, params: dict[str, Any] | None = None, require_better: bool | list[str] = False,
    timeout: float = 900, allow_ungated: bool = False,
) -> dict[str, Any]:
    """Re-run the serving version's training notebook with ``params``, deploying through its gate.

    Parameters recorded by an earlier retrain are kept unless ``params`` overrides them;
    ``require_better`` (True or metric names) also demands the new version beat the serving
    one. A serving version without validation notebooks has no gate: refused unless
    ``allow_ungated``. Returns new_version, status ('serving', 'rejected', 'ready',
    'notebook-failed', 'no-deploy', 'unchanged', ...), reason, executed_notebook,
    previous_version, parameters, gate, ungated."""
    reg = Registry()
    previous = reg.deployment(name)["serving_version"]
    if previous is None:
        raise NbdeployError(
            f"{name} has no serving version to retrain from; deploy one from its training notebook "
            f"or serve an earlier one with `nbdeploy rollback {name}`."
        )
    row = reg.version(name, previous)
    path = training_notebook(row)
    gate = gate_options(name, previous, require_better=require_better)
    if not gate["validate"] and not allow_ungated:
        raise NbdeployError(
            f"{name} v{previous} was deployed without validation notebooks, so retrain has no gate "
            "to put the new model through: it would be deployed unchecked (and promoted if the "
            "notebook serves it). Deploy the serving version with validate=[...] notebooks, or "
            f"retrain without a gate on purpose: `nbdeploy retrain {name} --no-gate` "
            "(allow_ungated=True)."
        )
    parameters = {**((row.get("lineage") or {}).get("parameters") or {}), **(params or {})}
    parent = config.runs_dir() / name
    parent.mkdir(parents=True, exist_ok=True)
    out_dir = Path(tempfile.mkdtemp(prefix=time.strftime("retrain-%Y%m%d-%H%M%S-"), dir=parent))
    report = out_dir / "deploys.jsonl"
    options = {"name": name, **gate, "report": str(report)}
    before = max(v["version"] for v in reg.versions(name))
    run = run_training(
        path, output_path=out_dir / f"retrain-{path.name}", parameters=parameters, timeout=timeout,
        env={RETRAIN_ENV: json.dumps(options, default=str), NOTEBOOK_ENV: str(path), REPRODUCE_ENV: ""},
        report=report,
    )
    result = {"name": name, "previous_version": previous,
              **_outcome(reg, name, path, before, previous, parameters, run),
              "executed_notebook": run.output_path, "parameters": parameters, "gate": gate,
              "ungated": not gate["validate"]}
    reg.log_event("retrain", name=name, version=result["new_version"], notebook=str(path),
                  detail={k: result[k] for k in ("previous_version", "status", "reason",
                                                 "executed_notebook", "parameters", "ungated")})
    return result
