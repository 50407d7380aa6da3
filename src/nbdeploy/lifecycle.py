"""Lifecycle helpers over the registry: serving history, diffs between versions, export specs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nbdeploy.capture.environment import requirement_lines
from nbdeploy.registry import Registry


def serving_history(name: str) -> list[int]:
    """Versions that served ``name``, oldest first, as a stack that rollbacks pop.

    Replays the registry's audit events: every switch of the stable endpoint pushes the
    version it switched to; a rollback to V pops versions until V is on top (so rolling back
    twice goes two steps back, never forth again). The last item is the serving version."""
    reg = Registry()
    stack: list[int] = []
    rolling_to: int | None = None
    for event in reg.events(name):
        if event["action"] == "rollback":
            rolling_to = event["version"]
        elif event["action"] == "switch":
            version = int(event["version"])
            if rolling_to == version and version in stack:
                while stack[-1] != version:
                    stack.pop()
            elif not stack or stack[-1] != version:
                stack.append(version)
            rolling_to = None
    current = reg.deployment(name)["serving_version"]
    if current is not None and (not stack or stack[-1] != current):
        stack.append(int(current))  # the registry was pointed at it without a switch
    return stack


def rollback_target(name: str) -> int | None:
    """The version served before the current one that can still serve (None if there is none)."""
    reg = Registry()
    stack = serving_history(name)
    statuses = {v["version"]: v["status"] for v in reg.versions(name)}
    current = stack[-1] if stack else None
    for version in reversed(stack[:-1]):
        if version != current and statuses.get(version) in ("ready", "serving"):
            return version
    return None


def diff(ref_a: str, ref_b: str) -> dict[str, Any]:
    """What changed between two versions: schema, pins, metrics, lineage."""
    from nbdeploy.refs import parse_ref

    reg = Registry()
    rows = []
    for ref in (ref_a, ref_b):
        name, version = parse_ref(ref)
        rows.append(reg.version(name, version))
    a, b = rows
    cols_a = {c["name"]: c for c in a["schema"]["columns"]}
    cols_b = {c["name"]: c for c in b["schema"]["columns"]}
    schema = {
        "added": sorted(set(cols_b) - set(cols_a)),
        "removed": sorted(set(cols_a) - set(cols_b)),
        "changed": sorted(c for c in set(cols_a) & set(cols_b) if cols_a[c] != cols_b[c]),
    }
    pins = {
        k: (a["pins"].get(k), b["pins"].get(k))
        for k in sorted(set(a["pins"]) | set(b["pins"]))
        if a["pins"].get(k) != b["pins"].get(k)
    }
    ma = (a.get("validation") or {}).get("metrics") or {}
    mb = (b.get("validation") or {}).get("metrics") or {}
    metrics = {k: (ma.get(k), mb.get(k)) for k in sorted(set(ma) | set(mb))}
    la, lb = a.get("lineage") or {}, b.get("lineage") or {}
    lineage = {k: (la.get(k), lb.get(k)) for k in sorted(set(la) | set(lb))
               if la.get(k) != lb.get(k) and k != "created_at"}
    other = {k: (a[k], b[k]) for k in ("framework", "task", "model_hash", "python_version", "status")
             if a[k] != b[k]}
    return {"a": f"{a['name']}:{a['version']}", "b": f"{b['name']}:{b['version']}", "schema": schema,
            "pins": pins, "metrics": metrics, "lineage": lineage, "other": other}


def export_spec(ref: str, *, image: str | None = None) -> Any:
    """An ExportSpec for ``name[:version]``, with the local split and shadow."""
    from nbdeploy.package.export import ExportSpec, Variant
    from nbdeploy.refs import parse_ref

    name, version = parse_ref(ref)
    reg = Registry()
    row = reg.version(name, version)
    dep = reg.deployment(name)

    def image_of(v: dict[str, Any]) -> str:
        return f"{name}:v{v['version']}"

    traffic = []
    for v, weight in sorted((dep.get("split") or {}).items(), key=lambda kv: int(kv[0])):
        vrow = reg.version(name, int(v))
        traffic.append(Variant(int(v), vrow["bento_tag"], image_of(vrow), int(weight)))
    shadow = None
    if dep.get("shadow_version"):
        srow = reg.version(name, dep["shadow_version"])
        shadow = Variant(srow["version"], srow["bento_tag"], image_of(srow), 0)
    notebooks = sorted({r["notebook"] for r in reg.validation_runs(name, row["version"])
                        if r["role"] == "candidate" and Path(r["notebook"]).exists()})
    return ExportSpec(
        name=name, version=row["version"], bento_tag=row["bento_tag"], image=image or image_of(row),
        traffic=traffic, shadow=shadow, validation_notebooks=notebooks,
        requirements=requirement_lines(row["pins"]),
        python_version=".".join(row["python_version"].split(".")[:2]),
    )
