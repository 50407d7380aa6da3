"""Kernel managers for notebook runs: stderr to a log file, extra environment, fast start.

A Python kernel of this very interpreter is forked from a warm fork server
(:mod:`nbdeploy.validate.forkserver`) instead of started from scratch: about 0.1 s instead of
0.8 s per notebook. Anything else (another interpreter, a kernel with its own provisioner,
``PYTHON*`` variables that differ from the server's, a platform without ``fork``) starts the
ordinary way. ``NBDEPLOY_FORK_KERNELS=0`` turns forking off.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning import LocalProvisioner
from traitlets import DottedObjectName, Type

__all__ = ["KernelClient", "KernelManager", "fork_server_pid", "kernel_manager", "warm"]

log = logging.getLogger(__name__)

LAUNCHER = ("-m", "ipykernel_launcher")


def forking_enabled() -> bool:
    """Whether kernels may be forked (``NBDEPLOY_FORK_KERNELS=0`` turns it off)."""
    supported = hasattr(os, "fork") and hasattr(socket, "send_fds") and sys.platform != "win32"
    return supported and os.environ.get("NBDEPLOY_FORK_KERNELS", "1").lower() not in (
        "0", "false", "no", "off")


class _ForkServer:
    """The client end of one fork server process, started on first use."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.proc: subprocess.Popen[bytes] | None = None
        self.sock: socket.socket | None = None
        self.env: dict[str, str] = {}
        self.failed: str | None = None

    def _start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.env = dict(os.environ)
        code = f"from nbdeploy.validate.forkserver import main; main({theirs.fileno()})"
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", code], pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                env=self.env, cwd="/",
            )
        finally:
            theirs.close()
        ours.settimeout(60)
        try:
            hello = json.loads(ours.recv(4096) or b"{}")
        except (OSError, ValueError) as exc:
            hello = {"error": str(exc)}
        if "ready" not in hello:
            ours.close()
            self._reap()
            raise RuntimeError(f"the kernel fork server did not start: {hello}")
        ours.settimeout(10)
        self.sock = ours

    def _reap(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
        self.proc = self.sock = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def compatible(self, env: dict[str, str]) -> bool:
        """The server's interpreter was set up by the same PYTHON* variables as ``env`` asks."""
        def python_vars(e: dict[str, str]) -> dict[str, str]:
            return {k: v for k, v in e.items() if k.startswith("PYTHON")}

        return python_vars(env) == python_vars(self.env)

    def fork(self, argv: list[str], cwd: str, env: dict[str, str], stdio: list[int]) -> int | None:
        """A new kernel's pid, or None when this kernel must start the ordinary way."""
        with self.lock:
            if self.failed:
                return None
            if not self.alive():
                if self.proc is not None:
                    self._reap()
                try:
                    self._start()
                except (OSError, RuntimeError) as exc:
                    self.failed = str(exc)
                    log.warning("%s; starting kernels the ordinary way", exc)
                    return None
            if not self.compatible(env):
                return None
            assert self.sock is not None
            request = json.dumps({"argv": argv, "cwd": cwd, "env": env}).encode()
            try:
                socket.send_fds(self.sock, [request], stdio)
                answer = json.loads(self.sock.recv(4096) or b"{}")
            except (OSError, ValueError) as exc:
                self._reap()
                log.warning("kernel fork server failed (%s); starting this kernel normally", exc)
                return None
        if "pid" not in answer:
            log.warning("kernel fork server refused: %s", answer.get("error"))
            return None
        return int(answer["pid"])

    def close(self) -> None:
        with self.lock:
            if self.sock is not None:
                self.sock.close()
            if self.proc is not None:
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
            self.proc = self.sock = None


_SERVER = _ForkServer()
atexit.register(_SERVER.close)


def warm() -> None:
    """Start the fork server in the background now, so the first kernel need not wait for it
    (called where a batch or a gate begins; a no-op when it runs or forking is off)."""
    if not forking_enabled() or _SERVER.alive() or _SERVER.failed:
        return

    def start() -> None:
        with _SERVER.lock:
            if not _SERVER.alive() and not _SERVER.failed:
                try:
                    _SERVER._start()
                except (OSError, RuntimeError) as exc:
                    _SERVER.failed = str(exc)

    threading.Thread(target=start, name="nbdeploy-fork-server", daemon=True).start()


def fork_server_pid() -> int | None:
    """Pid of this process's kernel fork server, if one runs."""
    return _SERVER.proc.pid if _SERVER.alive() and _SERVER.proc else None


class _ForkedProcess:
    """The parts of ``Popen`` a provisioner uses, for a kernel that is not our child."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                self.returncode = -1  # reaped by the fork server; the real code is not ours
            except PermissionError:
                pass
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0)
            time.sleep(0.02)
        return self.returncode or 0

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def killed(self) -> None:
        """SIGKILL was delivered: the kernel runs no more code; the fork server reaps it."""
        if self.returncode is None:
            self.returncode = -signal.SIGKILL

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


def _fd(stream: Any, default: int) -> tuple[int, bool]:
    """A file descriptor for ``stream`` (None = inherit ``default``); True when we opened it."""
    if stream is None:
        return default, False
    if stream == subprocess.DEVNULL or stream == subprocess.PIPE:
        return os.open(os.devnull, os.O_RDWR), True
    if isinstance(stream, int):
        return stream, False
    return stream.fileno(), False


class ForkingProvisioner(LocalProvisioner):
    """LocalProvisioner that forks kernels of this interpreter from the fork server."""

    async def wait(self) -> int | None:
        """As LocalProvisioner.wait, polling every 10 ms instead of 100 ms (a killed kernel
        is gone within milliseconds; every notebook run ends with this wait)."""
        while self.process is not None and await self.poll() is None:
            await asyncio.sleep(0.01)
        return await super().wait()

    async def kill(self, restart: bool = False) -> None:
        """SIGKILL the kernel's group; a forked kernel counts as ended at once (its exit,
        tens of milliseconds of memory teardown, is the fork server's to reap)."""
        await super().kill(restart=restart)
        if isinstance(self.process, _ForkedProcess):
            self.process.killed()

    def _forkable(self, cmd: list[str], kwargs: dict[str, Any]) -> bool:
        if not forking_enabled() or len(cmd) < 3 or tuple(cmd[1:3]) != LAUNCHER:
            return False
        if set(kwargs) - {"env", "cwd", "stdin", "stdout", "stderr", "extra_arguments",
                          "kernel_id", "independent"}:
            return False
        try:
            return Path(cmd[0]).resolve() == Path(sys.executable).resolve()
        except OSError:
            return False

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> Any:
        if not self._forkable(cmd, kwargs):
            return await super().launch_kernel(cmd, **kwargs)
        devnull = os.open(os.devnull, os.O_RDWR)  # the kernel reads nothing from stdin
        opened, stdio = [devnull], [devnull]
        for key, inherited in (("stdout", 1), ("stderr", 2)):
            fd, mine = _fd(kwargs.get(key), inherited)
            stdio.append(fd)
            if mine:
                opened.append(fd)
        env = {str(k): str(v) for k, v in (kwargs.get("env") or os.environ).items()}
        cwd = str(kwargs.get("cwd") or os.getcwd())
        try:
            pid = await asyncio.get_running_loop().run_in_executor(
                None, _SERVER.fork, ["ipykernel_launcher", *cmd[3:]], cwd, env, stdio)
        finally:
            for fd in opened:
                os.close(fd)
        if pid is None:
            return await super().launch_kernel(cmd, **kwargs)
        self.process = _ForkedProcess(pid)  # type: ignore[assignment]
        self.pid, self.pgid, self.cwd = pid, pid, cwd
        return self.connection_info


class KernelClient(AsyncKernelClient):
    """A client whose ``wait_for_ready`` returns as soon as the kernel is provably ready.

    jupyter_client's version ends by draining IOPub until it has been quiet for 0.2 s, on
    every start. Here the kernel is ready once a ``kernel_info`` request is answered on shell
    *and* the ``idle`` status of one of them arrives on IOPub (which proves IOPub is
    subscribed, so no output of the first cell can be lost); nothing waits on a quiet period.
    Stray ``kernel_info`` replies left on shell are ignored by nbclient (it matches ids)."""

    async def _async_wait_for_ready(self, timeout: float | None = None) -> None:
        import time
        from queue import Empty

        deadline = time.monotonic() + (timeout if timeout is not None else float("inf"))
        sent: set[str] = set()
        reply = None
        while True:
            sent.add(self.kernel_info())
            try:  # the first answer waits on the kernel's start; later ones come at once
                msg = await self.shell_channel.get_msg(timeout=1 if reply is None else 0.02)
                if msg["msg_type"] == "kernel_info_reply":
                    reply = msg
            except Empty:
                pass
            if reply is not None:
                # A fresh SUB socket misses what is published before its subscription
                # arrives, so ask again every 20 ms until one request's `idle` comes through.
                settle = time.monotonic() + 0.02
                while (left := settle - time.monotonic()) > 0:
                    try:
                        msg = await self.iopub_channel.get_msg(timeout=left)
                    except Empty:
                        break
                    if (msg["msg_type"] == "status"
                            and msg["content"].get("execution_state") == "idle"
                            and msg["parent_header"].get("msg_id") in sent):
                        self._handle_kernel_info_reply(reply)
                        return
            if not await self._async_is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kernel didn't respond in {timeout:g} seconds")

    wait_for_ready = _async_wait_for_ready  # the base class binds its own at class creation


class KernelManager(AsyncKernelManager):
    """Kernels that get ``extra_env``, write stderr to ``log_path`` and start fast."""

    extra_env: dict[str, str] = {}
    log_path: str = os.devnull
    client_class = DottedObjectName("nbdeploy.validate.fastkernel.KernelClient")
    client_factory = Type(KernelClient, klass=AsyncKernelClient)

    async def _async_wait(self, pollinterval: float = 0.1) -> None:
        # after a kill, jupyter_client polls every 0.1 s; a killed kernel is gone in ms
        await super()._async_wait(pollinterval=min(pollinterval, 0.01))

    async def _async_pre_start_kernel(self, **kw: Any) -> Any:
        if self.provisioner is None and not self.kernel_spec.metadata.get("kernel_provisioner"):
            self.kernel_id = self.kernel_id or kw.pop("kernel_id", str(uuid.uuid4()))
            self.provisioner = ForkingProvisioner(
                kernel_id=self.kernel_id, kernel_spec=self.kernel_spec, parent=self)
        return await super()._async_pre_start_kernel(**kw)

    async def start_kernel(self, **kw: Any) -> None:
        if self.extra_env:
            kw["env"] = {**(kw.get("env") or os.environ), **self.extra_env}
        with open(self.log_path, "ab") as log_file:  # the kernel keeps its own copy
            kw.setdefault("stderr", log_file)
            await super().start_kernel(**kw)


def kernel_manager(log_path: Path | str, extra_env: dict[str, str] | None = None) -> type:
    """A :class:`KernelManager` class whose kernels log to ``log_path`` and add ``extra_env``."""
    return type("KernelManager", (KernelManager,),
                {"log_path": str(log_path), "extra_env": dict(extra_env or {})})
