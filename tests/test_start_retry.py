"""A server start that loses a port race ("Address already in use") is tried again.

BentoML picks free ports for its control sockets and binds them a moment later; on a busy
machine another process can take one in between. The real race cannot be forced from a
test, so each case replays what such a start writes to its log (the exact lines BentoML's
circus/zmq and uvicorn print) through a stand-in for one start attempt.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nbdeploy.serve import process

ZMQ = "zmq.error.ZMQError: Address already in use (addr='tcp://127.0.0.1:{port}')\n"
UVICORN = ("ERROR: [Errno 98] error while attempting to bind on address ('127.0.0.1', {port}): "
           "address already in use\n")


def _attempts(monkeypatch: pytest.MonkeyPatch, log: Path, outcomes: list[str | None]) -> list[int]:
    """Replace one start attempt: each outcome is a log line to write and fail with, or None
    to succeed. Returns the ports the attempts were given."""
    ports: list[int] = []

    def once(bento_tag: str, *, log_file: Path, port: int, **_: object) -> int:
        ports.append(port)
        line = outcomes[len(ports) - 1]
        if line is None:
            return 4242
        with open(log_file, "a") as f:
            f.write(line.format(port=port if "{port}" in line and "bind on" in line else 61000))
        raise process.ServeError("the model server exited while starting")

    monkeypatch.setattr(process, "_start_once", once)
    return ports


def test_a_control_socket_clash_is_retried_on_the_same_port(tmp_path, monkeypatch) -> None:
    log = tmp_path / "server.log"
    log.write_text("an earlier run: Address already in use (addr='tcp://127.0.0.1:1')\n")
    ports = _attempts(monkeypatch, log, [ZMQ, None])
    assert process.start_server("b:1", log_file=log) == (4242, ports[0])
    assert len(ports) == 2 and ports[0] == ports[1]  # BentoML's own socket clashed, not ours


def test_a_clash_on_a_chosen_port_picks_another(tmp_path, monkeypatch) -> None:
    ports = _attempts(monkeypatch, tmp_path / "s.log", [UVICORN, None])
    pid, port = process.start_server("b:1", log_file=tmp_path / "s.log")
    assert pid == 4242 and len(ports) == 2 and port == ports[1] != ports[0]


def test_a_clash_on_the_users_port_is_reported(tmp_path, monkeypatch) -> None:
    port = process.free_port("127.0.0.1")
    ports = _attempts(monkeypatch, tmp_path / "s.log", [UVICORN, None])
    with pytest.raises(process.ServeError):
        process.start_server("b:1", log_file=tmp_path / "s.log", port=port)
    assert ports == [port]


def test_other_failures_and_repeated_clashes_are_not_retried_forever(tmp_path, monkeypatch) -> None:
    (tmp_path / "a.log").write_text(ZMQ.format(port=1))  # an earlier run's clash does not count
    ports = _attempts(monkeypatch, tmp_path / "a.log", ["ModuleNotFoundError: sklearn\n", None])
    with pytest.raises(process.ServeError):
        process.start_server("b:1", log_file=tmp_path / "a.log")
    assert len(ports) == 1
    ports = _attempts(monkeypatch, tmp_path / "b.log", [ZMQ] * 5)
    with pytest.raises(process.ServeError):
        process.start_server("b:1", log_file=tmp_path / "b.log")
    assert len(ports) == process.BIND_ATTEMPTS
