"""Faults for real: killed servers and deploys, a locked registry, racing deploys, unwritable
logs, a dying validation kernel, a tampered model and a SIGTERM during requests.

Deploys that must die at a given stage run in a child process (tests/helpers/fault_deploy.py)
that prints its progress and, through ``FAULT_STALL_AT``, parks at the stage the test names;
the test then SIGKILLs it there and inspects the registry and the serving version."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from nbdeploy import api, config
from nbdeploy.deployment import Deployment
from nbdeploy.errors import NbdeployError, RegistryBusyError, TamperedArtifactError
from nbdeploy.registry import Registry
from nbdeploy.serve import process
from tests.helpers.fault_deploy import iris_model
from tests.helpers.procs import family, wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tests" / "helpers" / "fault_deploy.py"
DYING = ROOT / "tests" / "notebooks" / "dying.ipynb"
BASE = "fault-base"


# -- helpers -------------------------------------------------------------------------------




def servers_in(home: Path) -> list[int]:
    """Pids of `bentoml serve` processes started from ``home`` (nbdeploy runs them with cwd=home),
    whether or not the registry knows them."""
    pids = []
    for cmd in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmd.read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(cmd.parent / "cwd")
        except OSError:
            continue
        if " serve " in text and "bentoml" in text and Path(cwd) == home:
            pids.append(int(cmd.parent.name))
    return pids


def kill_family(pid: int) -> None:
    """SIGKILL a server and every process it started; wait until they are gone."""
    members = family(pid)
    for member in members:
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, signal.SIGKILL)
    wait_until(lambda: not any(process.alive(m) for m in members), what=f"death of {members}")


def integrity(path: Path | None = None) -> str:
    """SQLite's own verdict on the registry file."""
    conn = sqlite3.connect(path or config.registry_path())
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def versions(name: str) -> list[tuple[int, str]]:
    """(version, state) of every version, oldest first."""
    return [(v["version"], v["status"]) for v in Registry().versions(name)]


def answers(url: str, X: pd.DataFrame) -> list[Any]:
    """Predictions from a live server (asserting it answered 200)."""
    resp = httpx.post(f"{url}/predict", json={"rows": X.head(5).to_dict(orient="records")}, timeout=60)
    assert resp.status_code == 200, resp.text
    return resp.json()


def stop_all(home: Path) -> None:
    """Stop every server and router a test left behind: known to the registry or not."""
    with contextlib.suppress(Exception):
        reg = Registry()
        for dep in reg.deployments():
            process.stop_pid(dep.get("router_pid"), grace=3.0)
            for row in reg.versions(dep["name"]):
                process.stop_pid(row.get("pid"), grace=3.0)
    for pid in servers_in(home):
        process.stop_pid(pid, grace=3.0)


class Child:
    """A fault_deploy.py child process whose output lines are read in the background."""

    def __init__(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.proc = subprocess.Popen(
            [sys.executable, str(SCRIPT), name, *args], stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, cwd=str(ROOT), env={**os.environ, **(env or {})},
        )
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, prefix: str, timeout: float = 300.0) -> str:
        """The first output line starting with ``prefix`` (fails if the child ends first)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"child ended before {prefix!r}:\n" + "\n".join(self.lines[-30:]))
            self.lines.append(line)
            if line.startswith(prefix):
                return line
        raise AssertionError(f"no {prefix!r} line within {timeout:.0f} s:\n" + "\n".join(self.lines[-30:]))

    def finish(self, timeout: float = 600.0) -> int:
        """Wait for the child's exit, keeping its remaining output."""
        code = self.proc.wait(timeout=timeout)
        while True:
            line = self._queue.get(timeout=10)
            if line is None:
                return code
            self.lines.append(line)

    def kill(self) -> None:
        """SIGKILL the deploy process itself (what a crash or `kill -9` does)."""
        self.proc.kill()
        self.proc.wait(timeout=30)


# -- shared base deployment ------------------------------------------------------------------
@dataclass
class Base:
    """A deployment serving v1, shared by the tests that only add versions next to it."""

    home: Path
    X: pd.DataFrame
    answers: list[Any]


@pytest.fixture(scope="module")
def shared_base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Base]:
    home = tmp_path_factory.mktemp("faults-base") / "nbdeploy"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NBDEPLOY_HOME", str(home))
        mp.setenv("BENTOML_DO_NOT_TRACK", "true")
        mp.setenv("NBDEPLOY_USER", "tester")
        model, X = iris_model(1.0)
        try:
            dep = api.deploy(model, BASE, X)
            yield Base(home, X, answers(str(dep.url), X))
        finally:
            stop_all(home)


@pytest.fixture
def base(shared_base: Base, monkeypatch: pytest.MonkeyPatch) -> Iterator[Base]:
    """The shared deployment, checked serving v1 before and after the test."""
    monkeypatch.setenv("NBDEPLOY_HOME", str(shared_base.home))
    assert Registry().deployment(BASE)["serving_version"] == 1
    assert Deployment(BASE).status() == "serving"
    yield shared_base
    assert integrity() == "ok"
    assert Registry().deployment(BASE)["serving_version"] == 1


def assert_base_serving(base: Base) -> None:
    """v1 is still the serving version, its process answers, with the same predictions."""
    dep = Deployment(BASE)
    assert dep.version == 1 and dep.status() == "serving"
    assert answers(str(dep.url), base.X) == base.answers


@pytest.fixture
def own_home(isolated_home: Path) -> Iterator[Path]:
    """The test's own NBDEPLOY_HOME; every server started from it is stopped afterwards."""
    yield config.home()
    stop_all(config.home())


# -- the model server dies -------------------------------------------------------------------
def test_sigkilled_server_is_down_then_start_restarts_it(own_home: Path) -> None:
    model, X = iris_model(0.7)
    dep = api.deploy(model, "killed", X)
    before_answers = answers(str(dep.url), X)
    before = versions("killed")
    pid = dep.row["pid"]

    kill_family(pid)

    assert dep.status() == "down"
    with pytest.raises(httpx.TransportError):
        httpx.post(f"{dep.url}/predict", json={"rows": X.head(1).to_dict(orient="records")}, timeout=5)
    assert integrity() == "ok" and versions("killed") == before

    restarted = api.start("killed")
    assert restarted.status() == "serving" and restarted.row["pid"] != pid
    assert answers(str(restarted.url), X) == before_answers
    assert integrity() == "ok" and versions("killed") == before
    assert [e["action"] for e in Registry().events("killed")].count("start") == 2


def test_sigkilled_server_process_leaves_no_orphan_worker(own_home: Path) -> None:
    model, X = iris_model(0.8)
    dep = api.deploy(model, "orphaned", X)
    pid = dep.row["pid"]
    workers = [p for p in family(pid) if p != pid]
    assert workers
    os.kill(pid, signal.SIGKILL)  # only the process nbdeploy recorded, as the OOM killer might
    try:
        wait_until(lambda: not process.alive(pid), what="the server process to die")
        assert dep.status() == "down"
        restarted = api.start("orphaned")
        assert restarted.status() == "serving"
        assert not [w for w in workers if process.alive(w)], "the old worker still runs"
    finally:
        for worker in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker, signal.SIGKILL)


# -- the deploy process dies at each stage -----------------------------------------------------
@pytest.mark.parametrize(
    ("stage", "args", "new_rows"),
    [
        ("capturing", ["--c", "0.11"], []),  # nothing saved yet
        ("bento-build", ["--c", "0.12"], []),  # model in the store, bento sources written, no row
        ("registered", ["--c", "0.13"], ["ready"]),  # row committed whole, never served
        ("validating", ["--c", "0.14", "--validate", str(DYING)], ["interrupted"]),  # side port
    ],
)
def test_deploy_killed_at_stage_leaves_no_half_version(
    base: Base, stage: str, args: list[str], new_rows: list[str]
) -> None:
    before = versions(BASE)
    child = Child(BASE, *args, env={"FAULT_STALL_AT": stage})
    child.wait_for(f"STALLED {stage}")
    child.kill()

    assert integrity() == "ok"
    after = versions(BASE)
    assert after[: len(before)] == before
    assert [state for _, state in after[len(before):]] == new_rows
    for row in Registry().versions(BASE)[len(before):]:
        assert row["bento_tag"] and row["model_tag"] and row["artifact_sha256"]  # a whole row
        if row["status"] == "interrupted":
            assert "deploy process stopped" in row["reason"]
    assert_base_serving(base)


def test_interrupted_candidate_server_does_not_outlive_its_deploy(base: Base) -> None:
    """A candidate whose deploy was killed mid-validation must not keep its side server running."""
    child = Child(BASE, "--c", "0.15", "--validate", str(DYING), env={"FAULT_STALL_AT": "validating"})
    child.wait_for("STALLED validating")
    row = Registry().versions(BASE)[-1]
    assert row["status"] == "candidate" and process.alive(row["pid"])
    child.kill()

    row = Registry().version(BASE, row["version"])
    assert row["status"] == "interrupted"
    try:
        wait_until(lambda: not process.alive(row["pid"]), timeout=20, what="the orphan candidate to stop")
    finally:
        process.stop_pid(row["pid"], grace=3.0)
    assert_base_serving(base)


# -- the registry is locked by another writer -----------------------------------------------
def test_locked_registry_makes_deploy_fail_clearly_without_damage(
    base: Base, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBDEPLOY_REGISTRY_TIMEOUT", "2")  # honoured once the core reads it
    before = versions(BASE)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sqlite3, sys\n"
         "conn = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
         "conn.execute('BEGIN EXCLUSIVE')\n"
         "print('locked', flush=True)\n"
         "sys.stdin.read()\n"
         "conn.execute('ROLLBACK')\n",
         str(config.registry_path())],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        model, X = iris_model(0.3)
        with pytest.raises(RegistryBusyError, match="locked by another process") as err:
            api.deploy(model, BASE, X)
        assert "try again" in str(err.value)
        assert_base_serving(base)  # reads and the serving process are unaffected by the lock
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)

    assert integrity() == "ok" and versions(BASE) == before
    retry = api.deploy(model, BASE, X, serve=False)
    assert retry.version == before[-1][0] + 1 and versions(BASE)[-1] == (retry.version, "ready")


# -- two deploys of one name at once ---------------------------------------------------------
def _race(tmp_path: Path, *args: str) -> list[Child]:
    """Two deploys of "racing" released together right before their version numbers are taken."""
    env = {"FAULT_BARRIER": str(tmp_path / "barrier"), "FAULT_PARTIES": "2"}
    children = [Child("racing", "--c", str(c), *args, env=env) for c in (0.31, 0.32)]
    codes = [child.finish() for child in children]
    assert codes == [0, 0], "\n".join(children[0].lines[-15:] + children[1].lines[-15:])
    assert all("BARRIER passed" in ch.lines for ch in children)
    return children


def test_two_deploys_of_one_name_at_once_get_consecutive_versions(own_home: Path, tmp_path: Path) -> None:
    children = _race(tmp_path, "--no-serve")
    registered = sorted(int(next(x for x in ch.lines if x.startswith("REGISTERED")).split()[1])
                        for ch in children)
    assert registered == [1, 2]
    assert integrity() == "ok" and versions("racing") == [(1, "ready"), (2, "ready")]
    assert [e["version"] for e in Registry().events("racing") if e["action"] == "deploy"] == [1, 2]


def test_two_served_deploys_at_once_leave_exactly_one_serving(own_home: Path, tmp_path: Path) -> None:
    _race(tmp_path)
    assert integrity() == "ok"
    reg = Registry()
    serving = reg.deployment("racing")["serving_version"]
    states = dict(versions("racing"))
    running = sorted(v for v in (1, 2) if process.alive(reg.version("racing", v).get("pid")))
    assert sorted(states) == [1, 2] and serving in (1, 2)
    assert Deployment("racing").status() == "serving"
    assert (states, running) == ({serving: "serving", 3 - serving: "ready"}, [serving])


# -- the logs folder cannot be written -------------------------------------------------------
def test_unwritable_log_dir_gives_a_clear_error_and_serving_continues(
    base: Base, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("NBDEPLOY_LOG_DIR", str(blocker / "logs"))
    before = versions(BASE)
    model, X = iris_model(0.4)

    with pytest.raises(NbdeployError) as err:
        api.deploy(model, BASE, X)
    message = str(err.value)
    assert str(blocker / "logs") in message and "NBDEPLOY_LOG_DIR" in message

    assert integrity() == "ok"
    assert versions(BASE)[: len(before)] == before
    assert all(state != "serving" for _, state in versions(BASE)[len(before):])
    assert_base_serving(base)


# -- a validation kernel dies ------------------------------------------------------------------
def test_validation_kernel_death_rejects_candidate_and_keeps_previous(base: Base) -> None:
    model, X = iris_model(0.5)
    dep = api.deploy(model, BASE, X, validate=[DYING])

    row = dep.row
    assert row["status"] == "rejected" and "kernel died" in row["reason"]
    assert Registry().deployment(BASE)["serving_version"] == 1
    assert not process.alive(row.get("pid"))  # its side server was stopped
    runs = Registry().validation_runs(BASE, row["version"])
    assert [r["status"] for r in runs] == ["failed"]
    assert_base_serving(base)


# -- the stored model was modified -------------------------------------------------------------
def test_tampered_artifact_is_refused_with_an_audit_event(own_home: Path) -> None:
    import bentoml

    model, X = iris_model(0.6)
    dep = api.deploy(model, "tampered", X)
    api.stop("tampered")
    row = dep.row
    stored = Path(bentoml.models.get(row["model_tag"]).path)
    victim = next(p for p in sorted(stored.rglob("*")) if p.is_file() and p.name != "model.yaml")
    victim.write_bytes(victim.read_bytes() + b"\0tampered")

    with pytest.raises(TamperedArtifactError, match="changed after deploy"):
        api.start("tampered")
    events = [e for e in Registry().events("tampered") if e["action"] == "artifact-tampered"]
    assert len(events) == 1 and events[0]["version"] == row["version"]
    assert events[0]["detail"]["expected"] == row["artifact_sha256"]
    assert Deployment("tampered").status() == "stopped" and not servers_in(own_home)

    # the bento itself refuses too, served by plain `bentoml serve` without nbdeploy in front
    log = own_home / "plain-serve.log"
    port = process.free_port()
    with open(log, "wb") as out:
        plain = subprocess.Popen(
            [*process.bentoml_command(), "serve", row["bento_tag"], "--port", str(port)], stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True, cwd=str(own_home),
            # the store this process really uses (BentoML caches its home per process)
            env={**os.environ, "BENTOML_HOME": process.bentoml_home()},
        )
    try:
        wait_until(lambda: "sha256 mismatch" in log.read_text(errors="replace"), timeout=180,
                   what="the bento to refuse its tampered model")
        assert not process.probe(f"http://127.0.0.1:{port}")
    finally:
        process.stop_pid(plain.pid, grace=3.0)


# -- SIGTERM while requests are in flight --------------------------------------------------------
def test_sigterm_drains_in_flight_requests(own_home: Path, tmp_path: Path) -> None:
    marker = str(tmp_path / "predicting")

    def slow_model(X: pd.DataFrame) -> list[int]:
        import pathlib
        import time as _time

        pathlib.Path(marker).touch()
        _time.sleep(1.5)
        return [0] * len(X)

    X = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    dep = api.deploy(slow_model, "draining", X)
    Path(marker).unlink(missing_ok=True)
    url = str(dep.url)
    results: list[int | str] = []

    def call() -> None:
        try:
            resp = httpx.post(f"{url}/predict", json={"rows": [{"x": 1.0}]}, timeout=60)
            results.append(resp.status_code)
        except httpx.HTTPError as exc:
            results.append(repr(exc))

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    wait_until(lambda: Path(marker).exists(), what="the model to start predicting")

    assert api.stop("draining") is True  # SIGTERM to the server, then wait for it to exit
    for t in threads:
        t.join(timeout=60)
    assert results == [200, 200, 200]
    assert Deployment("draining").status() == "stopped" and not servers_in(own_home)
