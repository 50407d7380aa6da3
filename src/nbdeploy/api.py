"""The core facade: every front door (magic, panel, CLI, server extension) calls these."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from nbdeploy import config, lineage
from nbdeploy.capture import adapter_for, infer_schema, pins_for
from nbdeploy.capture.environment import python_version
from nbdeploy.capture.frameworks import fingerprint
from nbdeploy.capture.schema import Schema, reference_sample, sample_frame
from nbdeploy.deployment import Deployment
from nbdeploy.errors import NbdeployError, NotFoundError, TamperedArtifactError
from nbdeploy.package import build
from nbdeploy.package.runtime.integrity import artifact_sha256
from nbdeploy.registry import Registry
from nbdeploy.serve import process

Progress = Callable[[str, str], None]
STAGES = ("capturing", "building", "starting", "validating", "serving")
NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9_.-]{0,61}[a-z0-9])?$")


def _noop(stage: str, message: str) -> None:
    pass


def check_name(name: str) -> str:
    """Deployment names become BentoML tags and URL parts: lowercase, digits, - _ ."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise NbdeployError(
            f"invalid deployment name {name!r}: use 1-63 lowercase letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit (e.g. 'iris-classifier')."
        )
    return name


def parse_ref(ref: str) -> tuple[str, int | None]:
    """``"name"`` or ``"name:3"`` → (name, version or None)."""
    name, _, ver = str(ref).partition(":")
    if ver and not ver.lstrip("v").isdigit():
        raise NbdeployError(f"invalid version in {ref!r}: write NAME or NAME:VERSION, e.g. iris:3.")
    return name, int(ver.lstrip("v")) if ver else None


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
    progress: Progress | None = None,
) -> Deployment:
    """Capture ``model``, build a bento, register a version and (by default) serve it.

    With ``validate`` notebooks the candidate is served on a side port and becomes the
    serving version only if every notebook passes and every ``require`` holds; otherwise it
    is recorded as rejected and the current version keeps serving untouched."""
    # retrain/reproduce hook: a training notebook run by `nbdeploy retrain|reproduce`
    if os.environ.get("NBDEPLOY_REPRODUCE_DIR") or os.environ.get("NBDEPLOY_RETRAIN_OPTIONS"):
        from nbdeploy.intercept import GATE_KEYS, intercept

        gate = {"validate": validate, "require": require, "require_better": require_better,
                "params": params}
        captured, gate = intercept(model, name, sample, gate)
        if captured is not None:
            return captured
        validate, require, require_better, params = map(gate.get, GATE_KEYS)
    say = progress or _noop
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

    same = _unchanged(reg, name, model_hash, schema, pins)
    if same is not None and not validate:
        reg.log_event("deploy-unchanged", name=name, version=same["version"], notebook=nb_path,
                      detail={"model_hash": model_hash})
        say("serving", f"{name} v{same['version']} already has this exact model; reusing it")
        dep = Deployment(name, same["version"])
        if serve and dep.status() != "serving":
            return start(name, same["version"], port=port, host=host, progress=say)
        return dep

    say("building", "saving the model and building the bento")
    reference = reference_sample(frame)
    model_tag = _save_model(adapter, model, name, model_hash, info)
    bento_version = f"{model_hash[:12]}-{int(time.time() * 1000) % 10**9:09d}"
    build_dir = config.home() / "builds" / name / bento_version
    stored = _model_path(model_tag)
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
    _write_reference(name, version, reference)
    if sensitive:
        _set_sensitive(reg, name, sensitive, schema)
    # the bento's metadata.json learns its version number once the registry assigned it
    _stamp_version(result.bento_tag, version)

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
        return promote(name, version, port=port, host=host, progress=say)
    return promote(name, version, port=port, host=host, progress=say)


def _set_sensitive(reg: Registry, name: str, sensitive: dict[str, str], schema: Schema) -> None:
    """Columns whose values are hashed or dropped in the prediction log, never kept in clear."""
    unknown = [c for c in sensitive if c not in schema.names]
    bad = {c: m for c, m in sensitive.items() if m not in ("hash", "drop")}
    if unknown or bad:
        raise NbdeployError(
            f"sensitive= must map input columns to 'hash' or 'drop'; unknown columns {unknown}, "
            f"bad modes {bad}. Columns: {schema.names}"
        )
    settings = dict(reg.deployment(name).get("settings") or {})
    settings["sensitive"] = dict(sensitive)
    reg.update_deployment(name, settings=settings)


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


def _save_model(adapter: Any, model: Any, name: str, model_hash: str, info: Any) -> str:
    import bentoml

    tag = f"{name}:{model_hash[:20]}" + ("-skops" if info.framework == "skops" else "")
    try:
        return str(bentoml.models.get(tag).tag)
    except bentoml.exceptions.NotFound:
        pass
    labels = {"nbdeploy.name": name, "framework": info.framework}
    saved = adapter.save(model, tag, labels=labels, metadata={"task": info.task})
    return str(saved.tag)


def _model_path(model_tag: str) -> str:
    import bentoml

    return bentoml.models.get(model_tag).path


def _stamp_version(bento_tag: str, version: int) -> None:
    import json

    import bentoml

    meta = Path(bentoml.get(bento_tag).path) / "src" / "metadata.json"
    if meta.exists():
        data = json.loads(meta.read_text())
        data["version"] = version
        meta.write_text(json.dumps(data, indent=2, default=str))


def reference_path(name: str, version: int) -> Path:
    """Where a version's reference sample is kept (explanations and drift use it)."""
    return config.runs_dir() / name / f"v{version}" / "reference.parquet.pkl"


def _write_reference(name: str, version: int, reference: pd.DataFrame) -> None:
    path = reference_path(name, version)
    path.parent.mkdir(parents=True, exist_ok=True)
    reference.to_pickle(path)


def load_reference(name: str, version: int | None = None) -> pd.DataFrame:
    """The reference sample stored with a version."""
    row = Registry().version(name, version)
    return pd.read_pickle(reference_path(name, row["version"]))


def verify_artifact(row: dict[str, Any]) -> None:
    """Refuse a stored model whose files changed since deploy (with an audit event)."""
    try:
        actual = artifact_sha256(_model_path(row["model_tag"]))
    except Exception as exc:
        raise TamperedArtifactError(
            f"the model {row['model_tag']} of {row['name']} v{row['version']} is missing from the "
            f"BentoML store ({exc}); redeploy it from the notebook."
        ) from None
    if actual != row["artifact_sha256"]:
        Registry().log_event("artifact-tampered", name=row["name"], version=row["version"],
                             detail={"expected": row["artifact_sha256"], "actual": actual})
        raise TamperedArtifactError(
            f"refusing to serve {row['name']} v{row['version']}: its model files changed after deploy "
            f"(sha256 {actual[:12]}… ≠ recorded {row['artifact_sha256'][:12]}…). Redeploy from the notebook."
        )


@contextmanager
def _promotion_lock(name: str) -> Iterator[None]:
    """An exclusive lock per deployment name, held while the serving version changes."""
    import fcntl

    folder = config.home() / "locks"
    folder.mkdir(exist_ok=True)
    with open(folder / f"{name}.promote.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _ensure_router(name: str) -> str:
    from nbdeploy.serve import endpoint

    return endpoint.ensure_router(name)


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach."""
    return host in ("localhost", "::1") or host.startswith("127.")


def start(
    name: str, version: int | None = None, *, port: int | None = None,
    host: str = config.DEFAULT_HOST, progress: Progress | None = None,
    api_key: str | None = None, tls_cert: str | Path | None = None, tls_key: str | Path | None = None,
) -> Deployment:
    """Start (or restart) the server of a version; by default the serving one.

    Any address other than loopback needs an API key: ``api_key``, ``$NBDEPLOY_API_KEY``, or
    a generated one shown once. ``tls_cert``/``tls_key`` serve HTTPS."""
    say = progress or _noop
    if bool(tls_cert) != bool(tls_key):
        raise NbdeployError("HTTPS needs both --tls-cert and --tls-key (PEM files).")
    reg = Registry()
    row = reg.version(name, version)
    dep = Deployment(name, row["version"])
    serving = reg.deployment(name)["serving_version"] == row["version"]
    if dep.status() == "serving":
        if serving:
            _ensure_router(name)
        return dep
    verify_artifact(row)
    # a server SIGKILLed earlier can leave its worker answering on the old port: stop it first
    process.stop_bento(row["bento_tag"])
    key = api_key or os.environ.get("NBDEPLOY_API_KEY") or None
    generated = False
    if not is_loopback(host) and not key:
        import secrets

        key, generated = secrets.token_urlsafe(32), True
    extra: list[str] = []
    if tls_cert:
        for path in (tls_cert, tls_key):
            if not Path(str(path)).is_file():
                raise NbdeployError(f"TLS file not found: {path}")
        extra = ["--ssl-certfile", str(tls_cert), "--ssl-keyfile", str(tls_key)]
    say("starting", f"starting bentoml serve for {name} v{row['version']}")
    last = row.get("port")
    want = port or (last if last and not process.port_in_use(last, host) else None)
    pid, port = process.start_server(
        row["bento_tag"], log_file=process.log_path(name, row["version"]), host=host, port=want,
        env={"NBDEPLOY_API_KEY": key} if key else {"NBDEPLOY_API_KEY": ""}, extra_args=extra,
    )
    reg.update_version(name, row["version"], pid=pid, port=port, host=host, tls=int(bool(tls_cert)),
                       auth=int(bool(key)))
    reg.log_event("start", name=name, version=row["version"],
                  detail={"pid": pid, "port": port, "host": host, "tls": bool(tls_cert),
                          "api_key": bool(key)})
    if serving:
        _ensure_router(name)
    started = Deployment(name, row["version"])
    started.api_key = key
    say("serving", f"{name} v{row['version']} serving at {started.url}")
    if generated:
        say("serving", f"API key for {started.url} (shown once, not stored): {key}")
    return started


def promote(
    name: str, version: int, *, port: int | None = None, host: str = config.DEFAULT_HOST,
    progress: Progress | None = None,
) -> Deployment:
    """Make ``version`` the serving one behind the stable URL, then stop the previous server.

    The router switches only once the new server answers, so clients see no failed request."""
    from nbdeploy.serve import endpoint

    say = progress or _noop
    row = Registry().version(name, version)
    if row["status"] in ("rejected", "failed", "interrupted", "candidate"):
        raise NbdeployError(
            f"{name} v{version} is {row['status']} ({row.get('reason') or 'no reason recorded'}); "
            "only a version that passed its gate can serve."
        )
    with _promotion_lock(name):  # two deploys finishing at once promote one after the other
        new = _start_beside_router(name, version, port=port, host=host, progress=progress)
        done = endpoint.switch(name, version)
        Registry().log_event("promote", name=name, version=version, detail={"previous": done["previous"]})
        reg = Registry()
        for other in reg.versions(name):  # whatever served before this switch stops now
            was_serving = other["version"] == done["previous"] or other["status"] == "serving"
            if other["version"] != version and was_serving:
                if other["status"] == "serving":
                    reg.update_version(name, other["version"], status="ready")
                stop(name, other["version"], router=False)
    say("serving", f"{name} v{version} serving at {done['url']} (stable endpoint)")
    return new


def _start_beside_router(
    name: str, version: int, *, port: int | None, host: str, progress: Progress | None
) -> Deployment:
    """Start ``version``'s server while the stable endpoint's router starts, if it must.

    Both are process starts that mostly wait on imports; side by side, the first deploy of a
    name is ready about half a second sooner. A router started here stops again if the
    version's server fails to start."""
    from concurrent.futures import ThreadPoolExecutor

    from nbdeploy.serve import endpoint

    if endpoint.router_status(name).get("running"):
        return start(name, version, port=port, host=host, progress=progress)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="nbdeploy-router") as pool:
        router = pool.submit(endpoint.ensure_router, name)
        try:
            new = start(name, version, port=port, host=host, progress=progress)
        except BaseException:
            if router.exception() is None:
                endpoint.stop_router(name)
            raise
        router.result()  # a router that would not start is reported as before, by its error
    return new


def stop(name: str, version: int | None = None, *, router: bool | None = None) -> bool:
    """Stop a version's server (by default the serving one, and then the stable endpoint's
    router too); True if a server was running."""
    reg = Registry()
    row = reg.version(name, version)
    if router if router is not None else version is None:
        from nbdeploy.serve import endpoint

        endpoint.stop_router(name)
    stopped = process.stop_pid(row.get("pid"))
    stopped = bool(process.stop_bento(row["bento_tag"])) or stopped
    reg.update_version(name, row["version"], pid=None)
    reg.log_event("stop", name=name, version=row["version"], detail={"was_running": stopped})
    return stopped


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


def load_model(ref: str) -> tuple[Any, pd.DataFrame]:
    """The deployed model object and its reference sample, loaded from the BentoML store."""
    import bentoml
    import cloudpickle

    name, version = parse_ref(ref)
    row = Registry().version(name, version)
    verify_artifact(row)
    stored = bentoml.models.get(row["model_tag"])
    framework = row["framework"]
    if framework == "pyfunc":
        from nbdeploy.capture.frameworks import PYFUNC_FILE

        model = cloudpickle.loads(Path(stored.path_of(PYFUNC_FILE)).read_bytes())
    elif framework == "xgboost":
        import xgboost as xgb

        from nbdeploy.capture.frameworks import XGB_FILE

        cls = stored.info.metadata.get("xgboost_class", "Booster")
        model = xgb.Booster() if cls == "Booster" else getattr(xgb, cls)()
        model.load_model(stored.path_of(XGB_FILE))
    elif framework == "skops":
        import skops.io as sio

        from nbdeploy.capture.frameworks import SKOPS_FILE, trusted_types

        model = sio.load(stored.path_of(SKOPS_FILE), trusted=trusted_types(stored.path))
    elif framework == "lightgbm" and stored.info.module.endswith("lightgbm"):
        model = bentoml.lightgbm.load_model(stored)
    else:
        model = bentoml.sklearn.load_model(stored)
    return model, load_reference(name, row["version"])


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


def rollback(name: str, to: int | None = None, *, progress: Progress | None = None) -> Deployment:
    """Serve the previous good version again (or version ``to``)."""
    reg = Registry()
    current = reg.deployment(name)["serving_version"]
    if to is None:
        older = [
            v for v in reg.versions(name)
            if v["status"] == "ready" and (current is None or v["version"] < current)
        ]
        if not older:
            raise NbdeployError(
                f"{name} has no earlier good version to roll back to (serving v{current}); "
                f"see `nbdeploy show {name}` for its versions."
            )
        to = older[-1]["version"]
    row = reg.version(name, to)
    if row["status"] not in ("ready", "serving"):
        raise NbdeployError(
            f"{name} v{to} is {row['status']} ({row.get('reason') or 'no reason recorded'}); "
            "only a version that passed its gate can serve."
        )
    reg.log_event("rollback", name=name, version=to, detail={"from": current})
    return promote(name, to, progress=progress)


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
