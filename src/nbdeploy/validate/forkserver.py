"""A kernel fork server: one process that has imported ipykernel forks each new kernel.

Starting a Python kernel costs about 0.8 s, half of it importing ipykernel and IPython. The
fork server pays that once; every kernel after it is an ``os.fork`` of the warm process that
then becomes ``python -m ipykernel_launcher -f CONNECTION_FILE``: its own session and
process group, the working folder, environment and stdio the kernel manager asked for, and
fresh random state (``random`` reseeds itself after a fork; numpy is not imported here).

Protocol (a SOCK_SEQPACKET socket inherited as fd N, see :mod:`nbdeploy.validate.fastkernel`):
a request is JSON ``{"argv": [...], "cwd": "...", "env": {...}}`` with three file
descriptors attached (the kernel's stdin, stdout, stderr); the answer is ``{"pid": PID}`` or
``{"error": "..."}``. The server exits when the socket closes, that is, when the process that
started it exits; its kernels then see their parent change and shut down.

Run: python -c "from nbdeploy.validate.forkserver import main; main(FD)"
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from typing import Any

#: What a kernel imports while starting (measured with ``python -X importtime``).
PRELOAD = (
    "ipykernel.kernelapp",
    "ipykernel.ipkernel",
    "ipykernel.zmqshell",
    "ipykernel.comm",
    "IPython.core.interactiveshell",
    "IPython.core.completer",
    "IPython.core.history",
    "IPython.core.completerlib",
    "IPython.core.debugger",
    "IPython.core.oinspect",
    "IPython.extensions.storemagic",
    "IPython.utils.wildcard",
    "faulthandler",
    "tornado.platform.asyncio",
    "ipykernel.debugger",  # debugpy: a quarter of the start time
    "sqlite3",
    "psutil",
    "pdb",
    "pydoc",
    "jupyter_client.session",
    "zmq.eventloop.zmqstream",
    "tornado.ioloop",
)

MAX_MESSAGE = 1 << 20


def _preload() -> None:
    import importlib

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception:  # an optional piece missing in this ipykernel: the kernel imports it
            pass


def _become_kernel(request: dict[str, Any], fds: list[int], server: socket.socket) -> None:
    """In the forked child: set up the process as the launcher would, then run the kernel."""
    server.close()
    os.setsid()  # own session and process group, like jupyter_client's launcher
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # interrupts raise KeyboardInterrupt
    for target, fd in zip((0, 1, 2), fds, strict=True):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    # ipykernel read JPY_PARENT_PID when this server imported it: say it again. The kernel
    # then exits when this server does (which exits when its caller does).
    os.environ["JPY_PARENT_PID"] = parent = str(os.getppid())
    import importlib.util

    launcher = importlib.util.find_spec("ipykernel_launcher")  # argv[0] as `python -m` sets it
    argv0 = launcher.origin if launcher and launcher.origin else request["argv"][0]
    sys.argv = [argv0, *request["argv"][1:], f"--IPKernelApp.parent_handle={parent}"]
    if sys.path and sys.path[0] == "":  # as ipykernel_launcher: the kernel adds '' back itself
        del sys.path[0]
    from ipykernel import kernelapp

    kernelapp.launch_new_instance()


def _fork(request: dict[str, Any], fds: list[int], server: socket.socket) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            _become_kernel(request, fds, server)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 1
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    for fd in fds:
        os.close(fd)
    deadline = time.monotonic() + 2.0  # answer once the child leads its own process group,
    while time.monotonic() < deadline:  # so a killpg by the caller can never reach us
        try:
            if os.getpgid(pid) == pid:
                break
        except ProcessLookupError:
            break
        time.sleep(0.0005)
    return pid


def main(fd: int) -> None:
    """Serve fork requests on socket ``fd`` until it closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the caller; EOF stops us
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the OS reaps exited kernels: no zombies
    server = socket.socket(fileno=fd)
    _preload()
    server.sendall(json.dumps({"ready": os.getpid()}).encode())
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(server, MAX_MESSAGE, 3)
        except (ConnectionError, OSError):
            return
        if not message:
            return
        try:
            request = json.loads(message)
            if len(fds) != 3:
                raise ValueError(f"expected 3 file descriptors, got {len(fds)}")
            answer: dict[str, Any] = {"pid": _fork(request, fds, server)}
        except Exception as exc:
            for fd_ in fds:
                try:
                    os.close(fd_)
                except OSError:
                    pass
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        try:
            server.sendall(json.dumps(answer).encode())
        except OSError:
            return
