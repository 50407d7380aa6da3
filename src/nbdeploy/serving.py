"""Serving a version: start and stop its server, promote it behind the stable endpoint,
roll back. Only one promotion per deployment name runs at a time."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nbdeploy import config
from nbdeploy.artifacts import verify_artifact
from nbdeploy.deployment import Deployment
from nbdeploy.errors import NbdeployError
from nbdeploy.refs import Progress, noop
from nbdeploy.registry import Registry
from nbdeploy.serve import process


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
    a generated one shown once. ``tls_cert``/``tls_key`` serve HTTPS; the deployment keeps
    their paths (never their contents), so every later start of any of its versions, by a
    deploy, promote or rollback, serves HTTPS with them too."""
    say = progress or noop
    if bool(tls_cert) != bool(tls_key):
        raise NbdeployError("HTTPS needs both --tls-cert and --tls-key (PEM files).")
    reg = Registry()
    row = reg.version(name, version)
    tls_cert, tls_key = _tls_files(reg, name, tls_cert, tls_key)
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


def _tls_files(
    reg: Registry, name: str, cert: str | Path | None, key: str | Path | None
) -> tuple[str | None, str | None]:
    """The certificate and key to serve ``name`` with: those given (remembered for the
    deployment), else those remembered, so a rollback never drops back to plain HTTP."""
    tls = reg.settings(name).get("tls") or {}
    if cert and key:
        remembered = {"cert": str(Path(cert).resolve()), "key": str(Path(key).resolve())}
        if tls != remembered:
            reg.set_setting(name, "tls", remembered)
        return remembered["cert"], remembered["key"]
    return tls.get("cert"), tls.get("key")


def promote(
    name: str, version: int, *, port: int | None = None, host: str = config.DEFAULT_HOST,
    progress: Progress | None = None, tls_cert: str | Path | None = None,
    tls_key: str | Path | None = None,
) -> Deployment:
    """Make ``version`` the serving one behind the stable URL, then stop the previous server.

    The router switches only once the new server answers, so clients see no failed request.
    With ``tls_cert``/``tls_key`` the version serves HTTPS and the router forwards over TLS."""
    from nbdeploy.serve import endpoint

    say = progress or noop
    row = Registry().version(name, version)
    if row["status"] in ("rejected", "failed", "interrupted", "candidate"):
        raise NbdeployError(
            f"{name} v{version} is {row['status']} ({row.get('reason') or 'no reason recorded'}); "
            "only a version that passed its gate can serve."
        )
    with _promotion_lock(name):  # two deploys finishing at once promote one after the other
        new = _start_beside_router(name, version, port=port, host=host, progress=progress,
                                   tls=(tls_cert, tls_key))
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
    name: str, version: int, *, port: int | None, host: str, progress: Progress | None,
    tls: tuple[str | Path | None, str | Path | None] = (None, None),
) -> Deployment:
    """Start ``version``'s server while the stable endpoint's router starts, if it must.

    Both are process starts that mostly wait on imports; side by side, the first deploy of a
    name is ready about half a second sooner. A router started here stops again if the
    version's server fails to start."""
    from concurrent.futures import ThreadPoolExecutor

    from nbdeploy.serve import endpoint

    cert, key = tls
    if endpoint.router_status(name).get("running"):
        return start(name, version, port=port, host=host, progress=progress, tls_cert=cert, tls_key=key)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="nbdeploy-router") as pool:
        router = pool.submit(endpoint.ensure_router, name)
        try:
            new = start(name, version, port=port, host=host, progress=progress, tls_cert=cert,
                        tls_key=key)
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


def rollback(name: str, to: int | None = None, *, progress: Progress | None = None) -> Deployment:
    """Serve again the version that served before the current one (or version ``to``).

    "Before" follows the registry's switch history, not version numbers: after promoting
    v3, then v1, then v4, a rollback serves v1. Each rollback steps one further back
    (v1, then v3); versions that can no longer serve (rejected since) are skipped."""
    from nbdeploy.lifecycle import rollback_target

    reg = Registry()
    current = reg.deployment(name)["serving_version"]
    if to is None:
        to = rollback_target(name)
        if to is None:
            raise NbdeployError(
                f"{name} has no earlier good version to roll back to: "
                + (f"none of the versions served before v{current} can serve again"
                   if current is not None else "no version serves it")
                + f"; pick one with `nbdeploy rollback {name} --to VERSION` "
                f"(see `nbdeploy show {name}`)."
            )
    row = reg.version(name, to)
    if row["status"] not in ("ready", "serving"):
        raise NbdeployError(
            f"{name} v{to} is {row['status']} ({row.get('reason') or 'no reason recorded'}); "
            "only a version that passed its gate can serve."
        )
    reg.log_event("rollback", name=name, version=to, detail={"from": current})
    return promote(name, to, progress=progress)
