"""What each REST endpoint answers, as plain functions over the core API.

They block (SQLite, process probes, starting ``bentoml serve``), so the handlers run them
in a thread pool, never on the tornado loop."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from nbdeploy.errors import NbdeployError
from nbdeploy.server.inputs import name_part

EVENTS_TAIL = 20
ACTIVE_STATES = ("ready", "serving")


class Unavailable(NbdeployError):
    """The installed nbdeploy core lacks this feature (answered 501)."""


class Conflict(NbdeployError):
    """The request is valid but the deployment's state forbids it (answered 409)."""


def jsonable(value: Any) -> Any:
    """Make core results JSON-ready: dataclasses, ``to_dict()`` objects, frames, NaN."""
    if hasattr(value, "to_dict") and not isinstance(value, dict):
        try:
            value = value.to_dict(orient="records")
        except TypeError:
            value = value.to_dict()
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def alert_state(name: str, rules: list[str]) -> dict[str, Any]:
    """How many of a deployment's alert rules fire now, and their messages.

    ``firing`` is None (with ``error``) when the rules could not be evaluated."""
    from nbdeploy import monitoring

    if not rules:
        return {"rules": 0, "firing": 0, "messages": []}
    try:
        firing = monitoring.alerts(name)
    except (NbdeployError, ValueError, OSError) as exc:
        return {"rules": len(rules), "firing": None, "messages": [], "error": str(exc)}
    return {"rules": len(rules), "firing": len(firing), "messages": [a.message for a in firing]}


def _rules(row: dict[str, Any]) -> list[str]:
    return list((row.get("settings") or {}).get("alerts") or [])


def list_deployments() -> list[dict[str, Any]]:
    """Every deployment's summary, plus its traffic split, shadow version and alert state."""
    from nbdeploy import api
    from nbdeploy.registry import Registry

    rows = {row["name"]: row for row in Registry().deployments()}
    out = []
    for summary in api.deployments():
        row = rows.get(summary["name"], {})
        out.append({**summary, "split": row.get("split"), "shadow_version": row.get("shadow_version"),
                    "alerts": alert_state(summary["name"], _rules(row))})
    return out


def _version_view(name: str, row: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any]:
    from nbdeploy.deployment import Deployment

    dep = Deployment(name, row["version"])
    keep = ("version", "reason", "created_at", "created_by", "framework", "task", "bento_tag",
            "pid", "port", "lineage", "validation", "pins", "python_version")
    return {
        **{key: row.get(key) for key in keep},
        "state": row["status"],
        "status": dep.status(),
        "endpoint": dep.url,
        "reproduce": (row.get("lineage") or {}).get("reproduce"),
        "validation_runs": [
            {key: run.get(key) for key in ("role", "notebook", "output_path", "status", "reason",
                                           "metrics", "parameters", "duration_s", "ts")}
            for run in runs if run["version"] == row["version"]
        ],
    }


def deployment_detail(name: str) -> dict[str, Any]:
    """Summary, versions (lineage, validation runs, live status) and the recent events."""
    from nbdeploy.deployment import Deployment
    from nbdeploy.registry import Registry

    reg = Registry()
    dep = reg.deployment(name_part(name))
    runs = reg.validation_runs(name)
    return {
        "name": name,
        "summary": Deployment(name).summary(),
        "serving_version": dep["serving_version"],
        "split": dep.get("split"),
        "shadow_version": dep.get("shadow_version"),
        "alerts": alert_state(name, _rules(dep)),
        "versions": [_version_view(name, row, runs) for row in reg.versions(name)],
        "events": reg.events(name, limit=EVENTS_TAIL),
    }


def versions(name: str) -> dict[str, Any]:
    """GET deployments/{name}/versions: the versions part of the detail."""
    detail = deployment_detail(name)
    return {"name": name, "serving_version": detail["serving_version"],
            "versions": detail["versions"]}


def status(name: str) -> dict[str, Any]:
    """GET deployments/{name}/status: the serving version's live status and endpoint."""
    from nbdeploy.deployment import Deployment
    from nbdeploy.registry import Registry

    Registry().deployment(name_part(name))
    return Deployment(name).summary()


def alerts(name: str) -> dict[str, Any]:
    """GET deployments/{name}/alerts: the stored rules and the alerts firing now."""
    from nbdeploy import monitoring
    from nbdeploy.registry import Registry

    rules = _rules(Registry().deployment(name_part(name)))
    firing = monitoring.alerts(name) if rules else []
    return {"name": name, "rules": rules, "firing": [a.to_dict() for a in firing],
            "count": len(firing)}


def run_action(name: str, action: str, version: int | None) -> dict[str, Any]:
    """start / stop / promote / rollback, answered with the affected version's summary."""
    from nbdeploy import api
    from nbdeploy.deployment import Deployment
    from nbdeploy.registry import Registry

    reg = Registry()
    reg.deployment(name_part(name))
    if action == "promote":
        row = reg.version(name, version)
        if row["status"] not in ACTIVE_STATES:
            raise Conflict(
                f"{name} v{version} is {row['status']} ({row.get('reason') or 'no reason recorded'}); "
                "only a version that passed its gate can be promoted."
            )
        result: dict[str, Any] = {"deployment": api.promote(name, version).summary()}
    elif action == "rollback":
        result = {"deployment": api.rollback(name, to=version).summary()}
    elif action == "start":
        result = {"deployment": api.start(name, version).summary()}
    else:
        target = reg.version(name, version)["version"]
        stopped = api.stop(name, target)
        result = {"stopped": stopped, "deployment": Deployment(name, target).summary()}
    return {"action": action, "name": name, **result}


def _feature(function: str, label: str) -> Any:
    from nbdeploy import api

    func = getattr(api, function, None)
    if func is None:
        raise Unavailable(f"{label} is not available in this version of nbdeploy; "
                          "upgrade nbdeploy to use it.")
    return func


def monitor(name: str, what: str) -> Any:
    """KPIs, drift or alerts of a deployment, when the core offers them."""
    from nbdeploy.registry import Registry

    if what == "alerts":
        return alerts(name)
    func = _feature(what, "drift detection" if what == "drift" else "KPIs")
    Registry().deployment(name_part(name))
    return jsonable(func(name))


def get_split(name: str) -> Any:
    """The current traffic split of a deployment."""
    from nbdeploy.registry import Registry

    func = _feature("get_split", "traffic splitting")
    Registry().deployment(name_part(name))
    return {"name": name, "split": jsonable(func(name))}


def set_split(name: str, weights: dict[int, int]) -> Any:
    """Route traffic between versions by weight."""
    from nbdeploy.registry import Registry

    func = _feature("split", "traffic splitting")
    Registry().deployment(name_part(name))
    result = func(name, weights)
    return {"name": name, "weights": {str(k): v for k, v in weights.items()},
            "split": jsonable(result)}
