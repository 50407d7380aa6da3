"""The stable address of a deployment: start, find and stop its router; change its routes.

Each deployment has one router process (``python -m nbdeploy.serve.router NAME``) on a port
chosen once and kept in ``deployments.router_port``, so the URL clients use survives new
versions, rollbacks and router restarts. Route changes are written to the registry, and every
function here returns only once the router confirms it routes by the new table: after
``switch`` the caller may stop the old server without failing a single request.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from nbdeploy import config
from nbdeploy.errors import NbdeployError, ServeError
from nbdeploy.registry import Registry
from nbdeploy.serve import process
from nbdeploy.serve.traffic import SplitError, normalize_split

MODULE = "nbdeploy.serve.router"
ROUTABLE = ("ready", "serving")

__all__ = [
    "ensure_router", "get_shadow", "get_split", "router_status", "router_url", "routes", "set_shadow",
    "set_split", "stop_router", "switch",
]


def router_url(port: int) -> str:
    """The stable URL of a router listening on ``port``."""
    return f"http://{config.DEFAULT_HOST}:{port}"


def router_log_path(name: str) -> Path:
    """Where a deployment's router writes its log."""
    return config.logs_dir() / f"{name}-router.log"


def _marker(name: str) -> str:
    # /proc/PID/cmdline joined with spaces ends with one, so this matches the name exactly
    return f"{MODULE} {name} "


@contextlib.contextmanager
def _lock(name: str) -> Iterator[None]:
    """One process at a time starts or stops a deployment's router."""
    folder = config.home() / "routers"
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _describe(url: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """The router's ``/_nbdeploy/routes`` answer, or None when nothing answers it there."""
    try:
        resp = process.local_http().get(f"{url}/_nbdeploy/routes", timeout=timeout)
        return resp.json() if resp.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


def _running(name: str, dep: Mapping[str, Any]) -> dict[str, Any] | None:
    """The live router's description when the recorded router runs and answers for ``name``."""
    port, pid = dep.get("router_port"), dep.get("router_pid")
    if not port or not process.alive(pid, marker=_marker(name)):
        return None
    info = _describe(router_url(port))
    return info if info and info.get("name") == name else None


def ensure_router(name: str, port: int | None = None, *, timeout: float = 60.0) -> str:
    """Start the router of ``name`` unless it runs; return its stable URL.

    The first start picks a free port (or ``port``) and records it; later starts reuse it.
    Passing another ``port`` moves the endpoint there (clients must then use the new URL)."""
    reg = Registry()
    with _lock(name):
        dep = reg.deployment(name)
        current = dep.get("router_port")
        if _running(name, dep):
            if port is None or port == current:
                return router_url(current)
            _stop(reg, name, dep)
        elif process.alive(dep.get("router_pid"), marker=_marker(name)):
            _stop(reg, name, dep)  # alive but not answering: replace it
        want = port or current
        if want and process.port_in_use(want):
            info = _describe(router_url(want))
            if info and info.get("name") == name and process.alive(info.get("pid"), marker=_marker(name)):
                reg.update_deployment(name, router_port=want, router_pid=info["pid"])
                return router_url(want)
            raise ServeError(
                f"port {want} is taken by another program, but it is the stable address of {name} "
                f"({router_url(want)}). Stop that program, or move the endpoint with "
                f"ensure_router({name!r}, port=N) and tell its clients the new address."
            )
        want = want or process.free_port()
        reg.update_deployment(name, router_port=want)
        pid = _spawn(name, want)
        try:
            _wait_started(name, pid, want, timeout)
        except BaseException:
            process.stop_pid(pid, grace=2.0)
            raise
        reg.update_deployment(name, router_pid=pid)
        reg.log_event("router-start", name=name, detail={"pid": pid, "port": want})
    return router_url(want)


def _spawn(name: str, port: int) -> int:
    """Start the router detached (own session), logging to its file; return its pid."""
    cmd = [sys.executable, "-m", MODULE, name, "--port", str(port)]
    env = {**os.environ, "NBDEPLOY_HOME": str(config.home()), "NBDEPLOY_LOG_DIR": str(config.logs_dir()),
           "PYTHONUNBUFFERED": "1"}
    log_file = router_log_path(name)
    with open(log_file, "ab") as log:
        log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=env, cwd=str(config.home()),
        )
    return proc.pid


def _wait_started(name: str, pid: int, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive(pid):
            tail = process.tail_log(router_log_path(name), 15)
            raise ServeError(f"the router of {name} exited while starting. Last log lines:\n{tail}")
        info = _describe(router_url(port), timeout=1.0)
        if info and info.get("pid") == pid and info.get("generation", 0) >= 1:
            return
        time.sleep(0.1)
    raise ServeError(
        f"the router of {name} did not answer on port {port} within {timeout:.0f} s; "
        f"see its log: {router_log_path(name)}"
    )


def _stop(reg: Registry, name: str, dep: Mapping[str, Any]) -> bool:
    pid = dep.get("router_pid")
    stopped = process.stop_pid(pid) if process.alive(pid, marker=_marker(name)) else False
    reg.update_deployment(name, router_pid=None)
    reg.log_event("router-stop", name=name, detail={"pid": pid, "was_running": stopped})
    return stopped


def stop_router(name: str) -> bool:
    """Stop the router of ``name`` (its port stays reserved for the next start)."""
    reg = Registry()
    with _lock(name):
        return _stop(reg, name, reg.deployment(name))


def router_status(name: str) -> dict[str, Any]:
    """Where the endpoint is, whether its router runs, and the routes it uses right now."""
    dep = Registry().deployment(name)
    port = dep.get("router_port")
    info = _running(name, dep)
    return {
        "name": name, "url": router_url(port) if port else None, "port": port,
        "pid": dep.get("router_pid") if info else None, "running": info is not None, "routes": info,
    }


def routes(name: str) -> dict[str, Any]:
    """The table the running router uses (``ServeError`` if it does not run)."""
    info = router_status(name)["routes"]
    if info is None:
        raise ServeError(f"the router of {name} is not running; start it with ensure_router({name!r}).")
    return info


def _confirm(name: str, check: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
    """Make the router re-read the registry until its table passes ``check``; return the table."""
    url = ensure_router(name)
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            resp = process.local_http().post(f"{url}/_nbdeploy/reload", timeout=5.0)
            if resp.status_code == 200 and check(info := resp.json()):
                return info
        if time.monotonic() > deadline:
            raise ServeError(
                f"the router of {name} did not pick up the new routes within {timeout:.0f} s; "
                f"see its log: {router_log_path(name)}"
            )
        time.sleep(0.05)


def _serve(name: str, version: int) -> str:
    """Start ``version``'s server unless it answers; return its URL."""
    from nbdeploy import api
    from nbdeploy.deployment import Deployment

    dep = Deployment(name, version)
    if dep.status() != "serving":
        dep = api.start(name, version)
    return str(dep.url)


def _routable(reg: Registry, name: str, version: int, role: str) -> dict[str, Any]:
    row = reg.version(name, version)
    if row["status"] not in ROUTABLE:
        raise SplitError(
            f"{name} v{version} is {row['status']} ({row.get('reason') or 'no reason recorded'}); "
            f"only a version that passed its gate can be the {role}."
        )
    return row


def switch(name: str, version: int, *, timeout: float = 30.0) -> dict[str, Any]:
    """Make ``version`` the one answering the stable URL, without failing a request.

    Starts its server if needed (waiting for /readyz), points ``serving_version`` at it, ends
    any traffic split (and a shadow of ``version`` itself), and returns once the router uses
    the new table. The previous version's server keeps running: the caller stops it."""
    started = time.monotonic()
    reg = Registry()
    row = reg.version(name, version)
    if row["status"] in ("rejected", "failed", "interrupted"):
        raise NbdeployError(
            f"{name} v{version} is {row['status']} ({row.get('reason') or 'no reason recorded'}); "
            "only a version that passed its gate can serve."
        )
    dep = reg.deployment(name)
    previous = dep["serving_version"]
    url = _serve(name, version)
    endpoint = ensure_router(name)
    changes: dict[str, Any] = {"serving_version": version}
    if dep.get("split"):
        changes["split"] = None
    if dep.get("shadow_version") == version:
        changes["shadow_version"] = None
    reg.update_deployment(name, **changes)
    reg.update_version(name, version, status="serving", reason=None)
    if previous and previous != version and reg.version(name, previous)["status"] == "serving":
        reg.update_version(name, previous, status="ready")
    reg.log_event("switch", name=name, version=version,
                  detail={"previous": previous, "split_ended": dep.get("split")})
    info = _confirm(
        name,
        lambda t: t["serving"] == version and not t["split"] and t["urls"].get(str(version)) == url,
        timeout,
    )
    return {"name": name, "version": version, "previous": previous, "url": endpoint,
            "generation": info["generation"], "split_ended": dep.get("split") or {},
            "seconds": round(time.monotonic() - started, 3)}


def get_split(name: str) -> dict[int, int]:
    """The traffic split of ``name`` as ``{version: percent}`` ({} when one version serves)."""
    return normalize_split(Registry().deployment(name).get("split"))


def set_split(name: str, weights: Mapping[Any, Any] | None, *, timeout: float = 30.0) -> dict[int, int]:
    """Spread requests over versions by percent, e.g. ``{3: 90, 4: 10}``; ``None``/{} ends it.

    Starts the servers of versions getting traffic, then returns once the router uses the
    split. Requests with the same key (``X-NBDeploy-Key`` header or ``?key=``) stay on one version."""
    split = normalize_split(weights)
    reg = Registry()
    for version in split:
        _routable(reg, name, version, "target of a traffic split")
    urls = {v: _serve(name, v) for v, w in split.items() if w > 0}
    ensure_router(name)
    reg.update_deployment(name, split=split or None)
    reg.log_event("split", name=name, detail={"split": {str(v): w for v, w in split.items()}})
    expected = {str(v): w for v, w in split.items() if w > 0}
    _confirm(name, lambda t: t["split"] == expected
             and all(t["urls"].get(str(v)) == u for v, u in urls.items()), timeout)
    return split


def get_shadow(name: str) -> int | None:
    """The version mirroring ``name``'s prediction traffic, if any."""
    return Registry().deployment(name).get("shadow_version")


def set_shadow(name: str, version: int | None, *, timeout: float = 30.0) -> None:
    """Mirror every prediction request to ``version`` in the background (``None`` stops it).

    Its answers go to the prediction log with ``shadow=True`` and the request's id; the client
    only ever sees the primary version's answer."""
    reg = Registry()
    url = None
    if version is not None:
        version = int(version)
        _routable(reg, name, version, "shadow")
        dep = reg.deployment(name)
        if version == dep["serving_version"] and not dep.get("split"):
            raise SplitError(f"{name} v{version} already answers every request; shadow another version.")
        url = _serve(name, version)
    ensure_router(name)
    reg.update_deployment(name, shadow_version=version)
    reg.log_event("shadow", name=name, version=version)
    _confirm(name, lambda t: t["shadow"] == version
             and (url is None or t["urls"].get(str(version)) == url), timeout)
