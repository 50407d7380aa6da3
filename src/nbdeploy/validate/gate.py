"""The validation gate: a candidate serves only if its notebooks pass and requirements hold.

The candidate runs on a side port while notebooks execute against it; the serving version
is never touched until the candidate has passed. Executed notebooks are kept under
``$NBDEPLOY_HOME/runs/NAME/vN`` and linked to the version in the registry."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from nbdeploy import config
from nbdeploy.registry import Registry
from nbdeploy.serve import process
from nbdeploy.validate import fastkernel
from nbdeploy.validate.batch import BatchResult, run_batch
from nbdeploy.validate.requirements import check, compare
from nbdeploy.validate.requirements import require_better as worse_than_champion

Say = Callable[[str, str], None]


def _params(reg: Registry, name: str, version: int, endpoint: str | None, extra: dict) -> dict[str, Any]:
    row = reg.version(name, version)
    return {"model_name": name, "model_version": version, "model_tag": row["model_tag"],
            "endpoint": endpoint, **extra}


def _run(
    reg: Registry, name: str, version: int, role: str, notebooks: list[Path], params: dict,
    timeout: float, say: Say, out_dir: Path,
) -> tuple[BatchResult, dict[str, Any]]:
    total = len(notebooks)

    def progress(done: int, _total: int, result: Any) -> None:
        say("validating", f"[{done}/{total}] {Path(result.notebook).name} against v{version} ({role}): "
                          f"{result.status}" + (f" — {result.reason}" if result.reason else ""))

    result = run_batch(notebooks, params=params, parallel=min(2, total), timeout=timeout,
                       out_dir=out_dir, progress=progress)
    metrics: dict[str, Any] = {}
    for run in result.results:
        metrics.update(run.metrics)
        reg.add_validation_run(name, version, {**run.to_dict(), "role": role})
    return result, metrics


def run_gate(
    reg: Registry, name: str, version: int, *, notebooks: list[Path], require: dict[str, str],
    require_better: list[str], params: dict[str, Any], timeout: float, host: str, progress: Say,
) -> bool:
    """Serve the candidate on a side port, run the notebooks, decide. True when it passed."""
    from nbdeploy import api

    missing = [str(p) for p in notebooks if not Path(p).exists()]
    if missing:
        reason = f"validation notebook not found: {', '.join(missing)}"
        reg.update_version(name, version, status="rejected", reason=reason)
        reg.log_event("reject", name=name, version=version, detail={"reasons": [reason]})
        progress("failed", reason)
        return False
    progress("starting", f"starting candidate v{version} on a side port")
    fastkernel.warm()  # kernels' fork server starts while the candidate's server does
    candidate = api.start(name, version, host=host, progress=progress)
    out_dir = config.runs_dir() / name / f"v{version}"
    reasons: list[str] = []
    deltas: list[dict[str, Any]] = []
    champion_metrics: dict[str, Any] = {}
    try:
        progress("validating", f"running {len(notebooks)} validation notebook(s) against v{version}")
        batch, metrics = _run(reg, name, version, "candidate", notebooks,
                              _params(reg, name, version, candidate.url, params), timeout, progress,
                              out_dir)
        reasons += [f"{Path(r.notebook).name}: {r.reason}" for r in batch.results if not r.ok]
        reasons += check(metrics, require) if not reasons else []
        champion = reg.deployment(name)["serving_version"]
        if not reasons and champion and champion != version:
            champ = api.get(f"{name}:{champion}")
            if champ.status() == "serving":
                progress("validating", f"running the same notebooks against the champion v{champion}")
                _, champion_metrics = _run(
                    reg, name, champion, "champion", notebooks,
                    _params(reg, name, champion, champ.url, params), timeout, progress,
                    out_dir / f"champion-v{champion}")
                deltas = compare(champion_metrics, metrics)
                reasons += worse_than_champion(champion_metrics, metrics, require_better, strict=True)
            elif require_better:
                reasons.append(f"--require-better needs the champion v{champion} serving to compare; "
                               f"start it with `nbdeploy serve {name}`")
    except BaseException:
        process.stop_pid(reg.version(name, version).get("pid"))
        raise
    summary = {"passed": not reasons, "metrics": metrics, "champion_metrics": champion_metrics,
               "deltas": deltas, "reasons": reasons, "require": require,
               "require_better": require_better}
    if reasons:
        reg.update_version(name, version, status="rejected", reason="; ".join(reasons), validation=summary)
        reg.log_event("reject", name=name, version=version, detail={"reasons": reasons})
        api.stop(name, version)
        progress("failed", f"v{version} rejected: {'; '.join(reasons)}")
        return False
    reg.update_version(name, version, status="ready", validation=summary)
    reg.log_event("validated", name=name, version=version, detail={"metrics": metrics})
    progress("validating", f"v{version} passed validation: " +
             ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()))
    return True
