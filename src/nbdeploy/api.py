"""The core facade: every front door (magic, panel, CLI, server extension) calls these.

Deploying lives here; serving a version (start, stop, promote, rollback) is in
:mod:`nbdeploy.serving`, a version's stored files in :mod:`nbdeploy.artifacts`, names and
references in :mod:`nbdeploy.refs`. All are re-exported, so ``api.X`` keeps working.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from nbdeploy import config, lineage
from nbdeploy.artifacts import (
    load_model,
    load_reference,
    mask_sensitive,
    mask_stored_reference,
    model_path,
    reference_path,
    save_model,
    stamp_version,
    verify_artifact,
    write_reference,
)
from nbdeploy.capture import adapter_for, infer_schema, pins_for
from nbdeploy.capture.environment import python_version
from nbdeploy.capture.frameworks import fingerprint
from nbdeploy.capture.schema import Schema, reference_sample, sample_frame
from nbdeploy.deployment import Deployment
from nbdeploy.errors import NbdeployError, NotFoundError
from nbdeploy.package import build
from nbdeploy.package.runtime.integrity import artifact_sha256
from nbdeploy.refs import NAME_RE, Progress, check_name, noop, parse_ref
from nbdeploy.registry import Registry
from nbdeploy.serving import is_loopback, promote, rollback, start, stop

__all__ = [
    "NAME_RE", "STAGES", "Progress", "check_name", "deploy", "deployments", "drift",
    "endpoint_url", "get", "get_split", "is_loopback", "kpis", "load_model", "load_reference",
    "parse_ref", "promote", "reference_path", "rollback", "shadow", "split", "start", "stop",
    "validation_params", "verify_artifact",
]

STAGES = ("capturing", "building", "starting", "validating", "serving")


def deploy(
    model: Any,
    name: str,
    sample: Any = None,
    *,
    validate: list[str | Path] | None = None,
    require: dict[str, str] | None = None,
    require_better: list[str] | None = None,
    params: dict[str, Any] | None = None,
    serve: bool = True,
    port: int | None = None,
    host: str = config.DEFAULT_HOST,
    allow_nan: bool | list[str] | None = None,
    categorical: list[str] | None = None,
    notebook: str | None = None,
    timeout: float = 600,
    format: str = "auto",
    sensitive: dict[str, str] | None = None,
    tls_cert: str | Path | None = None,
    tls_key: str | Path | None = None,
    progress: Progress | None = None,
) -> Deployment:
    """Capture ``model``, build a bento, register a version and (by default) serve it.

    With ``validate`` notebooks the candidate is served on a side port and becomes the
    serving version only if every notebook passes and every ``require`` holds; otherwise it
    is recorded as rejected and the current version keeps serving untouched.
    ``tls_cert``/``tls_key`` (PEM files) serve the version over HTTPS."""
    # retrain/reproduce hook: a training notebook run by `nbdeploy retrain|reproduce`
    if os.environ.get("NBDEPLOY_REPRODUCE_DIR") or os.environ.get("NBDEPLOY_RETRAIN_OPTIONS"):
        from nbdeploy.intercept import GATE_KEYS, intercept

        gate = {"validate": validate, "require": require, "require_better": require_better,
                "params": params}
        captured, gate = intercept(model, name, sample, gate)
        if captured is not None:
            return captured
        validate, require, require_better, params = map(gate.get, GATE_KEYS)
    say = progress or noop
    check_name(name)
    reg = Registry()

    say("capturing", f"capturing {type(model).__name__}")
    adapter = _choose_adapter(model, format)
    info = adapter.info(model)
    frame, _ = sample_frame(sample)
    schema = infer_schema(sample, allow_nan=allow_nan, categorical=categorical)
    model_hash, modules = fingerprint(model)
    pins = pins_for(adapter.packages, modules)
    nb_path = notebook or lineage.current_notebook()

    if sensitive:  # checked before anything is stored: a bad mapping leaves no version behind
        _check_sensitive(sensitive, schema)
    stored_sensitive = _stored_sensitive(reg, name)
    masking = sensitive or stored_sensitive

    same = _unchanged(reg, name, model_hash, schema, pins)
    if same is not None and not validate:
        if sensitive:  # applies to the reused version too (its reference may be in clear)
            _store_sensitive(reg, name, sensitive)
            new = {c: m for c, m in sensitive.items() if stored_sensitive.get(c) != m}
            mask_stored_reference(name, same["version"], same["bento_tag"], new)
        reg.log_event("deploy-unchanged", name=name, version=same["version"], notebook=nb_path,
                      detail={"model_hash": model_hash})
        say("serving", f"{name} v{same['version']} already has this exact model; reusing it")
        dep = Deployment(name, same["version"])
        if serve and dep.status() != "serving":
            return start(name, same["version"], port=port, host=host, progress=say,
                         tls_cert=tls_cert, tls_key=tls_key)
        return dep

    say("building", "saving the model and building the bento")
    reference = mask_sensitive(name, reference_sample(frame), masking)
    model_tag = save_model(adapter, model, name, model_hash, info)
    bento_version = f"{model_hash[:12]}-{int(time.time() * 1000) % 10**9:09d}"
    build_dir = config.home() / "builds" / name / bento_version
    stored = model_path(model_tag)
    sha = artifact_sha256(stored)
    if info.framework == "skops":
        from nbdeploy.capture.frameworks import trusted_types

        info.extra["skops_trusted"] = trusted_types(stored)
    build.write_sources(
        build_dir, name=name, model_tag=model_tag, info=info, schema=schema, reference=reference,
        metadata={"name": name, "pins": pins, "python_version": python_version(),
                  "artifact_sha256": sha, "model_tag": model_tag, "created_at": time.time()},
    )
    result = build.build_bento(
        build_dir, bento_name=name, bento_version=bento_version, model_tag=model_tag,
        pins=pins, labels={"nbdeploy.name": name, "nbdeploy.model_hash": model_hash[:32]},
    )
    lin = lineage.collect(frame, notebook=nb_path)
    version = reg.add_version(
        name,
        {
            "created_at": time.time(), "created_by": config.user(),
            "status": "candidate" if validate else "ready",
            "framework": info.framework, "task": info.task,
            "model_tag": model_tag, "bento_tag": result.bento_tag,
            "model_hash": model_hash, "artifact_sha256": sha,
            "schema": schema.to_dict(), "pins": pins, "python_version": python_version(),
            "lineage": lin, "build_dir": str(build_dir), "owner_pid": os.getpid(),
        },
        event={"action": "deploy", "notebook": nb_path,
               "detail": {"bento_tag": result.bento_tag, "framework": info.framework}},
    )
    write_reference(name, version, reference)
    if sensitive:
        _store_sensitive(reg, name, sensitive)
    # the bento's metadata.json learns its version number once the registry assigned it
    stamp_version(result.bento_path, version)

    tls = {"tls_cert": tls_cert, "tls_key": tls_key}
    if not serve and not validate:
        say("stopped", f"{name} v{version} registered (not served)")
        return Deployment(name, version)

    if validate:
        from nbdeploy.validate.gate import run_gate

        passed = run_gate(
            reg, name, version, notebooks=[Path(p) for p in validate], require=require or {},
            require_better=require_better or [], params=params or {}, timeout=timeout,
            host=host, progress=say,
        )
        if not passed:
            return Deployment(name, version)
        if not serve:
            return Deployment(name, version)
        return promote(name, version, port=port, host=host, progress=say, **tls)
    return promote(name, version, port=port, host=host, progress=say, **tls)


def _check_sensitive(sensitive: dict[str, str], schema: Schema) -> None:
    """Refuse a ``sensitive=`` mapping that names unknown columns or modes."""
    unknown = [c for c in sensitive if c not in schema.names]
    bad = {c: m for c, m in sensitive.items() if m not in ("hash", "drop")}
    if unknown or bad:
        raise NbdeployError(
            f"sensitive= must map input columns to 'hash' or 'drop'; unknown columns {unknown}, "
            f"bad modes {bad}. Columns: {schema.names}"
        )


def _stored_sensitive(reg: Registry, name: str) -> dict[str, str]:
    """The sensitive columns a deployment already has (empty for a new name)."""
    try:
        return dict(reg.settings(name).get("sensitive") or {})
    except NotFoundError:
        return {}


def _store_sensitive(reg: Registry, name: str, sensitive: dict[str, str]) -> None:
    """Columns whose values are hashed or dropped in the prediction log, never kept in clear."""
    reg.set_setting(name, "sensitive", dict(sensitive))


def _choose_adapter(model: Any, format: str) -> Any:
    from nbdeploy.capture.frameworks import SklearnAdapter, SkopsAdapter

    if format == "auto":
        return adapter_for(model)
    if format == "skops":
        if not SklearnAdapter().matches(model):
            raise NbdeployError("format='skops' is for scikit-learn estimators and Pipelines only; "
                                f"{type(model).__name__} is not one. Use format='auto'.")
        return SkopsAdapter()
    raise NbdeployError(f"unknown format {format!r}: use 'auto' or 'skops'.")


def _unchanged(reg: Registry, name: str, model_hash: str, schema: Schema, pins: dict) -> dict | None:
    try:
        current = reg.version(name)
    except NotFoundError:
        return None
    if (
        current["model_hash"] == model_hash
        and current["schema"] == schema.to_dict()
        and current["pins"] == pins
        and current["status"] in ("serving", "ready")
    ):
        return current
    return None


def deployments() -> list[dict[str, Any]]:
    """Every deployment with its serving version, status and endpoint."""
    out = []
    for dep in Registry().deployments():
        try:
            d = Deployment(dep["name"])
            out.append(d.summary())
        except NotFoundError:
            continue
    return out


def get(ref: str) -> Deployment:
    """A Deployment handle for ``name`` or ``name:version``."""
    name, version = parse_ref(ref)
    row = Registry().version(name, version)
    return Deployment(name, row["version"])


def validation_params(ref: str) -> dict[str, Any]:
    """Parameters injected into validation notebooks for ``name[:version]``."""
    name, version = parse_ref(ref)
    dep = Deployment(name, Registry().version(name, version)["version"])
    row = dep.row
    return {
        "model_name": name,
        "model_version": row["version"],
        "model_tag": row["model_tag"],
        "endpoint": dep.url if dep.status() == "serving" else None,
    }


def split(name: str, weights: dict[int, int]) -> dict[int, int]:
    """Route shares of traffic to versions, e.g. ``split("iris", {3: 90, 4: 10})``."""
    from nbdeploy.serve import endpoint

    return endpoint.set_split(name, weights)


def get_split(name: str) -> dict[int, int]:
    """The current traffic split (``{}`` when one version serves)."""
    from nbdeploy.serve import endpoint

    return endpoint.get_split(name)


def shadow(name: str, version: int | None) -> None:
    """Mirror prediction traffic to ``version`` (answers logged, never returned); None stops."""
    from nbdeploy.serve import endpoint

    endpoint.set_shadow(name, version)


def kpis(name: str, window: str | float | None = "1h") -> dict[int, dict[str, Any]]:
    """Request rate, error rate and latency percentiles per version."""
    from nbdeploy import monitoring

    return monitoring.kpis(name, window)


def drift(name: str, version: int | None = None, window: str | float | None = "24h") -> Any:
    """Drift of recent traffic against the version's reference sample (a DriftReport)."""
    from nbdeploy import monitoring

    return monitoring.drift(name, version, window=window)


def endpoint_url(name: str) -> str | None:
    """The stable URL of a deployment (None before its first serve)."""
    from nbdeploy.serve.endpoint import router_url

    port = Registry().deployment(name).get("router_port")
    return router_url(port) if port else None
