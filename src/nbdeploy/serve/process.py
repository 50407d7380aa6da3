"""Start, probe and stop detached ``bentoml serve`` processes on loopback.

Servers run in their own session, so they outlive the kernel or CLI that started them;
any later process finds them through the pid and port stored in the registry."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from nbdeploy import config
from nbdeploy.errors import ServeError


def free_port(host: str = config.DEFAULT_HOST) -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int, host: str = config.DEFAULT_HOST) -> bool:
    """True when something already listens on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def alive(pid: int | None, marker: str | None = None) -> bool:
    """True when ``pid`` runs (reaping it if it is our exited child) and, when given,
    its command line contains ``marker`` (so a reused pid is not mistaken for ours)."""
    if not pid:
        return False
    with contextlib.suppress(ChildProcessError, OSError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if marker:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            return True
        return marker in cmdline
    return True


_LOCAL_HTTP: httpx.Client | None = None


def local_http() -> httpx.Client:
    """One client for control calls to this machine's own servers and routers.

    ``httpx.get`` builds a client per call and loads the CA bundle each time (about 50 ms of
    CPU, taken from a server that is starting on a 2-core machine while readiness is polled).
    Loopback calls need no CA and must never go through a proxy from the environment."""
    global _LOCAL_HTTP
    if _LOCAL_HTTP is None:
        # No keep-alive: the client closes each connection, so no server port (a router's
        # stable one) is left in TIME_WAIT when that server stops and must bind it again.
        _LOCAL_HTTP = httpx.Client(verify=False, trust_env=False,
                                   limits=httpx.Limits(max_keepalive_connections=0))
    return _LOCAL_HTTP


def bentoml_command() -> list[str]:
    """The ``bentoml`` CLI of the running interpreter's environment."""
    script = Path(sys.executable).parent / "bentoml"
    return [str(script)] if script.exists() else [sys.executable, "-m", "bentoml"]


def bentoml_home() -> str:
    """The BentoML store this process uses, so a child server reads the same one."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    return str(BentoMLContainer.bentoml_home.get())


def log_path(name: str, version: int) -> Path:
    """Where a version's server writes its output."""
    return config.logs_dir() / f"{name}-v{version}.log"


def start_server(
    bento_tag: str,
    *,
    log_file: Path,
    host: str = config.DEFAULT_HOST,
    port: int | None = None,
    env: dict[str, str] | None = None,
    extra_args: list[str] | None = None,
    timeout: float = 90.0,
    on_wait: Callable[[float], None] | None = None,
) -> tuple[int, int]:
    """Start ``bentoml serve`` in the background and wait for ``/readyz``; return (pid, port).

    BentoML picks free ports for its own control sockets and binds them a moment later;
    another process can take one in between ("Address already in use"). Such a start is
    tried again, up to three times in all (with a new port too when ours was chosen here)."""
    chosen = port is None
    for attempt in range(1, BIND_ATTEMPTS + 1):
        port = port or free_port(host)
        if port_in_use(port, host):
            if chosen:
                port = None
                continue
            raise ServeError(
                f"port {port} on {host} is already in use; pick another with port=... or --port.")
        offset = log_file.stat().st_size if log_file.exists() else 0
        try:
            return _start_once(bento_tag, log_file=log_file, host=host, port=port, env=env,
                               extra_args=extra_args, timeout=timeout, on_wait=on_wait), port
        except ServeError:
            clash = _address_clash(log_file, offset)
            if clash is None or attempt == BIND_ATTEMPTS or (clash == port and not chosen):
                raise
            if clash == port:
                port = None
    raise ServeError(f"no free port found on {host} after {BIND_ATTEMPTS} tries")


BIND_ATTEMPTS = 3


def _address_clash(log_file: Path, offset: int) -> int | None:
    """The port of an "Address already in use" in the log written since ``offset``, if any."""
    try:
        with open(log_file, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except OSError:
        return None
    if "address already in use" not in text.lower():
        return None
    # zmq: "Address already in use (addr='tcp://127.0.0.1:57643')";
    # uvicorn: "bind on address ('127.0.0.1', 3000): address already in use"
    found = re.findall(r"(?i)address already in use.{0,40}?:(\d+)|, (\d+)\): address already in use",
                       text)
    return int(next(p for p in found[-1] if p)) if found else 0


def _start_once(
    bento_tag: str, *, log_file: Path, host: str, port: int, env: dict[str, str] | None,
    extra_args: list[str] | None, timeout: float, on_wait: Callable[[float], None] | None,
) -> int:
    cmd = [*bentoml_command(), "serve", bento_tag, "--host", host, "--port", str(port), *(extra_args or [])]
    child_env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true", "BENTOML_HOME": bentoml_home(), **(env or {})}
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=child_env, cwd=str(config.home()),
        )
    scheme = "https" if extra_args and "--ssl-certfile" in extra_args else "http"
    try:
        wait_ready(f"{scheme}://{_connect_host(host)}:{port}", proc.pid, timeout=timeout,
                   log_file=log_file, on_wait=on_wait)
    except BaseException:
        stop_pid(proc.pid, grace=2.0)
        raise
    return proc.pid


def _connect_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "") else host


def wait_ready(
    url: str, pid: int, *, timeout: float, log_file: Path | None = None,
    on_wait: Callable[[float], None] | None = None,
) -> None:
    """Poll ``url/readyz`` until 200; fail fast, with the log's tail, if the process dies."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if not alive(pid):
            tail = tail_log(log_file, 15) if log_file else ""
            raise ServeError(f"the model server exited while starting. Last log lines:\n{tail}")
        with contextlib.suppress(httpx.HTTPError):
            if local_http().get(f"{url}/readyz", timeout=1.0).status_code == 200:
                return
        if on_wait:
            on_wait(time.monotonic() - start)
        time.sleep(0.1)
    raise ServeError(
        f"the model server at {url} was not ready after {timeout:.0f} s; see its log: {log_file}"
    )


def probe(url: str, timeout: float = 1.0) -> bool:
    """True when ``url/readyz`` answers 200."""
    try:
        return local_http().get(f"{url}/readyz", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (read from /proc), deepest last."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def pids_serving(marker: str) -> list[int]:
    """BentoML processes (server or worker) whose command line names ``marker`` (a bento tag),
    including workers orphaned when their server was SIGKILLed."""
    found = []
    for cmd in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmd.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in text and "bentoml" in text and int(cmd.parent.name) != os.getpid():
            found.append(int(cmd.parent.name))
    return found


def stop_bento(marker: str, *, grace: float = 5.0) -> int:
    """Stop every process serving bento ``marker``; return how many there were."""
    pids = pids_serving(marker)
    _signal_all(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    _signal_all([p for p in pids if alive(p)], signal.SIGKILL)
    return len(pids)


def _signal_all(pids: list[int], sig: int) -> None:
    for p in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p, sig)


def stop_pid(pid: int | None, *, grace: float = 10.0) -> bool:
    """SIGTERM the server and its workers (letting in-flight requests drain), then SIGKILL
    whatever is left — workers included, since BentoML starts them in their own sessions."""
    if not pid or not alive(pid):
        return False
    family = [pid, *descendants(pid)]
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(os.getpgid(pid), signal.SIGTERM)
    _signal_all(family, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not any(alive(p) for p in family):
            return True
        time.sleep(0.05)
    _signal_all(family + [d for p in family for d in descendants(p)], signal.SIGKILL)
    for _ in range(50):
        if not any(alive(p) for p in family):
            break
        time.sleep(0.05)
    return True


def tail_log(path: Path | None, lines: int = 50) -> str:
    """The last ``lines`` lines of a log file ('' if it does not exist)."""
    if not path or not Path(path).exists():
        return ""
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - 200_000))
        text = fh.read().decode(errors="replace")
    return "\n".join(text.splitlines()[-lines:])
