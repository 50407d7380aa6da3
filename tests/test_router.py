"""The stable endpoint for real: a router process in front of two `bentoml serve` processes."""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import signal
import socket
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from nbdeploy import api
from nbdeploy.deployment import Deployment
from nbdeploy.errors import NbdeployError, NotFoundError, ServeError
from nbdeploy.monitor import FeedbackStore, PredictionLog
from nbdeploy.registry import Registry
from nbdeploy.serve import endpoint, process
from nbdeploy.serve.traffic import RoutingTable, SplitError
from tests.helpers.procs import wait_until as _wait_until

pytestmark = pytest.mark.slow
NAME = "iris"


@dataclass
class Ctx:
    """The shared deployment: its home, data and the URL the router had after v1."""

    home: Path
    X: pd.DataFrame
    url_after_v1: str

    def rows(self, start: int, n: int = 1) -> list[dict[str, Any]]:
        return self.X.iloc[start : start + n].to_dict(orient="records")




wait_until = functools.partial(_wait_until, timeout=30.0)  # this module waits at most 30 s


def kill_server(pid: int) -> None:
    """SIGKILL a `bentoml serve` process and its workers (they run in sessions of their own)."""
    family, parents = [pid], {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    for member in family:
        family.extend(parents.get(member, []))
    for member in family:
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, signal.SIGKILL)
    wait_until(lambda: not any(process.alive(m) for m in family), what=f"death of {family}")


def _stop_everything() -> None:
    reg = Registry()
    for row in reg.versions(NAME):
        process.stop_pid(row.get("pid"), grace=3.0)
    process.stop_pid(reg.deployment(NAME).get("router_pid"), grace=3.0)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ctx]:
    """iris v1 behind its router, then v2 deployed (serving) and v1 started again."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    home = tmp_path_factory.mktemp("router-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NBDEPLOY_HOME", str(home / "nbdeploy"))
        mp.setenv("BENTOML_DO_NOT_TRACK", "true")
        mp.setenv("NBDEPLOY_USER", "tester")
        X, y = load_iris(return_X_y=True, as_frame=True)
        try:
            api.deploy(LogisticRegression(max_iter=500).fit(X, y), NAME, X)
            url = endpoint.ensure_router(NAME)
            api.deploy(LogisticRegression(max_iter=500, C=0.05).fit(X, y), NAME, X)
            api.start(NAME, 1)
            yield Ctx(home, X, url)
        finally:
            _stop_everything()


@pytest.fixture
def ctx(shared: Ctx, monkeypatch: pytest.MonkeyPatch) -> Ctx:
    """The shared deployment, reset to: v2 serving, v1 running, no split, no shadow."""
    monkeypatch.setenv("NBDEPLOY_HOME", str(shared.home / "nbdeploy"))
    endpoint.set_split(NAME, None)
    endpoint.set_shadow(NAME, None)
    for version in (1, 2):
        if Deployment(NAME, version).status() != "serving":
            api.start(NAME, version)
    if Registry().deployment(NAME)["serving_version"] != 2:
        endpoint.switch(NAME, 2)
    return shared


def url() -> str:
    return endpoint.ensure_router(NAME)


def direct(version: int) -> str:
    return str(Deployment(NAME, version).url)


def predict(base: str, rows: list[dict], **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{base}/predict", json={"rows": rows}, timeout=30, **kwargs)


def records(**filters: Any) -> list[dict]:
    return PredictionLog.for_deployment(NAME).read(**filters)


def test_stable_url_survives_new_version_rollback_and_router_restarts(ctx: Ctx) -> None:
    assert url() == ctx.url_after_v1
    resp = predict(url(), ctx.rows(0))
    assert resp.status_code == 200
    assert resp.headers["x-nbdeploy-version"] == "2"
    assert uuid.UUID(resp.headers["x-request-id"])

    api.rollback(NAME)  # back to v1 through today's promote; the router follows the registry
    wait_until(lambda: predict(url(), ctx.rows(0)).headers["x-nbdeploy-version"] == "1", what="v1")
    assert url() == ctx.url_after_v1

    assert endpoint.stop_router(NAME) is True
    assert endpoint.router_status(NAME)["running"] is False
    with pytest.raises(httpx.ConnectError):
        predict(ctx.url_after_v1, ctx.rows(0))
    port = endpoint.router_status(NAME)["port"]
    with socket.socket() as squatter:  # another program took the port meanwhile
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        with pytest.raises(ServeError, match=f"port {port} is taken by another program"):
            endpoint.ensure_router(NAME)
    assert endpoint.ensure_router(NAME) == ctx.url_after_v1  # same port after a restart
    assert predict(ctx.url_after_v1, ctx.rows(0)).status_code == 200

    pid = endpoint.router_status(NAME)["pid"]
    os.kill(pid, signal.SIGKILL)  # a crash: the next ensure finds it dead and restarts it
    wait_until(lambda: not process.alive(pid), what="router death")
    assert endpoint.ensure_router(NAME) == ctx.url_after_v1
    status = endpoint.router_status(NAME)
    assert status["running"] and status["pid"] != pid
    assert status["routes"]["serving"] == 1


def test_answers_and_errors_pass_through_with_ids_and_version(ctx: Ctx) -> None:
    rows = ctx.rows(60, 3)
    via = predict(url(), rows, headers={"X-Request-Id": "client-id-1"})
    assert via.status_code == 200
    assert via.headers["x-request-id"] == "client-id-1"
    assert via.headers["x-nbdeploy-version"] == "2"
    assert via.json() == predict(direct(2), rows).json()
    [rec] = [r for r in records() if r["request_id"] == "client-id-1"]
    assert (rec["version"], rec["status"], rec["shadow"]) == (2, 200, False)
    assert rec["inputs"] == json.loads(json.dumps(rows)) and rec["outputs"] == via.json()
    assert isinstance(rec["latency_ms"], float) and rec["latency_ms"] > 0

    bad = [{"sepal length (cm)": "wide"}]
    mine, theirs = predict(url(), bad), predict(direct(2), bad)
    assert mine.status_code == theirs.status_code == 400
    assert mine.json() == theirs.json()
    assert mine.headers["x-nbdeploy-version"] == "2"
    failed = [r for r in records() if r["request_id"] == mine.headers["x-request-id"]]
    assert failed[0]["status"] == 400 and failed[0]["error"]
    assert failed[0]["latency_ms"] > 0  # refused requests are timed too

    proba = httpx.post(f"{url()}/predict_proba", json={"rows": rows}, timeout=30)
    assert proba.status_code == 200 and len(proba.json()) == 3
    assert httpx.get(f"{url()}/metadata").json() == httpx.get(f"{direct(2)}/metadata").json()
    assert httpx.get(f"{url()}/docs.json").json()["openapi"]
    assert httpx.get(f"{url()}/readyz").json() == {"status": "ready", "version": 2}
    assert httpx.get(f"{url()}/livez").status_code == 200
    assert httpx.get(f"{url()}/nope").status_code == httpx.get(f"{direct(2)}/nope").status_code == 404

    spaced = predict(url(), rows, headers={"X-Request-Id": "has spaces"})
    assert spaced.status_code == 400 and spaced.json()["field"] == "X-Request-Id"
    long_key = predict(url(), rows, params={"key": "k" * 300})
    assert long_key.status_code == 400 and long_key.json()["field"] == "X-NBDeploy-Key"
    wrong = httpx.get(f"{url()}/feedback")
    assert wrong.status_code == 405 and wrong.json()["field"] == "method"


def test_split_80_20_over_400_requests_and_sticky_keys(ctx: Ctx) -> None:
    assert endpoint.set_split(NAME, {"1": 80, 2: 20}) == {1: 80, 2: 20}
    assert endpoint.get_split(NAME) == {1: 80, 2: 20}
    seen: dict[str, str] = {}
    with httpx.Client(base_url=url(), timeout=30) as client:
        for i in range(400):
            resp = client.post("/predict", json={"rows": ctx.rows(i % 150)})
            assert resp.status_code == 200
            seen[resp.headers["x-request-id"]] = resp.headers["x-nbdeploy-version"]
        counts = Counter(seen.values())
        sigma = math.sqrt(400 * 0.8 * 0.2)  # binomial: 8 requests
        assert abs(counts["1"] - 320) <= 4 * sigma, counts
        logged = {r["request_id"]: str(r["version"]) for r in records() if r["request_id"] in seen}
        assert logged == seen  # every answer logged, under the version that gave it

        table = RoutingTable(NAME, serving=2, split=((1, 80), (2, 20)))
        sticky = {}
        for k in range(40):
            key = f"customer-{k}"
            got = {client.post("/predict", json={"rows": ctx.rows(k)},
                               headers={"X-NBDeploy-Key": key}).headers["x-nbdeploy-version"]
                   for _ in range(3)}
            got.add(client.post("/predict", params={"key": key},
                                json={"rows": ctx.rows(k)}).headers["x-nbdeploy-version"])
            assert len(got) == 1, (key, got)  # header and query key: always the same version
            sticky[key] = got.pop()
            assert sticky[key] == str(table.choose(key))
        assert set(sticky.values()) == {"1", "2"}

    with pytest.raises(SplitError, match="add up to 50"):
        endpoint.set_split(NAME, {1: 50})
    with pytest.raises(NotFoundError):
        endpoint.set_split(NAME, {1: 50, 9: 50})
    assert endpoint.get_split(NAME) == {1: 80, 2: 20}  # a refused split changes nothing
    endpoint.set_split(NAME, None)
    assert {predict(url(), ctx.rows(0)).headers["x-nbdeploy-version"] for _ in range(20)} == {"2"}


def test_shadow_sees_the_same_requests_and_never_changes_answers(ctx: Ctx) -> None:
    endpoint.set_shadow(NAME, 1)
    assert endpoint.get_shadow(NAME) == 1
    ids = [f"shadow-{i}" for i in range(30)]
    answers = {}
    for i, rid in enumerate(ids):
        resp = predict(url(), ctx.rows(i * 5), headers={"X-Request-Id": rid})
        assert resp.status_code == 200 and resp.headers["x-nbdeploy-version"] == "2"
        answers[rid] = resp.json()
        assert answers[rid] == predict(direct(2), ctx.rows(i * 5)).json()
    shadows = wait_until(lambda: (s := [r for r in records(shadow=True) if r["request_id"] in ids])
                         and len(s) == len(ids) and s, what="shadow records")
    assert sorted(r["request_id"] for r in shadows) == sorted(ids)
    assert {r["version"] for r in shadows} == {1}
    for rec in shadows:
        i = ids.index(rec["request_id"])
        assert rec["outputs"] == predict(direct(1), ctx.rows(i * 5)).json()
        assert rec["inputs"] == json.loads(json.dumps(ctx.rows(i * 5)))
    primary = [r for r in records(shadow=False) if r["request_id"] in ids]
    assert {r["version"] for r in primary} == {2} and len(primary) == len(ids)

    # the shadow server dies without the registry knowing: clients notice nothing
    kill_server(Registry().version(NAME, 1)["pid"])
    late = [f"late-{i}" for i in range(20)]
    for i, rid in enumerate(late):
        resp = predict(url(), ctx.rows(i * 5), headers={"X-Request-Id": rid})
        assert resp.status_code == 200 and resp.headers["x-nbdeploy-version"] == "2"
        assert resp.json() == answers[ids[i]]
    stats = wait_until(lambda: (s := endpoint.routes(NAME)["stats"])["shadow_inflight"] == 0 and s,
                       what="shadow tasks to finish")
    assert stats["shadow_failed"] >= len(late)
    assert not [r for r in records(shadow=True) if r["request_id"] in late]

    with pytest.raises(SplitError, match="already answers every request"):
        endpoint.set_shadow(NAME, 2)


def test_feedback_ok_unknown_and_bad_fields(ctx: Ctx) -> None:
    resp = predict(url(), ctx.rows(100, 2))
    rid = resp.headers["x-request-id"]
    fb = f"{url()}/feedback"
    ok = httpx.post(fb, json={"request_id": rid, "truth": 2, "row": 1})
    assert ok.status_code == 200 and ok.json() == {"ok": True, "request_id": rid, "row": 1}
    store = FeedbackStore(PredictionLog.for_deployment(NAME).directory)
    assert [(e["request_id"], e["row"], e["truth"]) for e in store.read()][-1] == (rid, 1, 2)

    unknown = httpx.post(fb, json={"request_id": "never-seen", "truth": 1})
    assert unknown.status_code == 404 and unknown.json()["field"] == "request_id"
    assert "never-seen" in unknown.json()["error"]
    no_row = httpx.post(fb, json={"request_id": rid, "truth": 1, "row": 5})
    assert no_row.status_code == 404 and no_row.json()["field"] == "row"
    for body, field in [
        ({"truth": 1}, "request_id"),
        ({"request_id": rid}, "truth"),
        ({"request_id": rid, "truth": None}, "truth"),
        ({"request_id": rid, "truth": 1, "row": -1}, "row"),
        ({"request_id": rid, "truth": 1, "row": "first"}, "row"),
        ({"request_id": 7, "truth": 1}, "request_id"),
        ([rid, 1], "body"),
    ]:
        bad = httpx.post(fb, json=body)
        assert bad.status_code == 400, body
        assert bad.json()["field"] == field, body
    garbage = httpx.post(fb, content=b"{not json", headers={"content-type": "application/json"})
    assert garbage.status_code == 400 and garbage.json()["field"] == "body"
    assert len(store.read()) == 1  # refused feedback is never stored


def test_unwritable_log_keeps_serving_and_warns_once(ctx: Ctx) -> None:
    folder = PredictionLog.for_deployment(NAME).directory
    before = endpoint.routes(NAME)["log"]
    moved = folder.with_name("moved-away")
    folder.rename(moved)
    folder.write_text("a file where the log folder was")
    try:
        for i in range(10):
            resp = predict(url(), ctx.rows(i))
            assert resp.status_code == 200 and resp.headers["x-nbdeploy-version"] == "2"
        after = endpoint.routes(NAME)["log"]
        assert after["dropped"] - before["dropped"] == 10
        assert after["written"] == before["written"]
    finally:
        folder.unlink()
        moved.rename(folder)
    text = endpoint.router_log_path(NAME).read_text()
    assert text.count("predictions are being dropped") == 1
    predict(url(), ctx.rows(0))
    assert endpoint.routes(NAME)["log"]["written"] == before["written"] + 1


def test_killed_version_gives_a_clear_503_and_the_router_survives(ctx: Ctx) -> None:
    kill_server(Registry().version(NAME, 2)["pid"])
    resp = predict(url(), ctx.rows(0))
    assert resp.status_code == 503
    assert resp.json() == {"error": "iris v2 is down; run `nbdeploy serve iris`", "version": 2}
    assert resp.headers["x-nbdeploy-version"] == "2" and resp.headers["x-request-id"]
    assert httpx.get(f"{url()}/readyz").status_code == 503
    assert httpx.get(f"{url()}/livez").status_code == 200
    assert endpoint.routes(NAME)["stats"]["retries"] >= 1

    endpoint.set_split(NAME, {1: 50, 2: 50})  # starts v2 again before it routes to it
    answers = Counter(predict(url(), ctx.rows(0)).status_code for _ in range(20))
    assert answers == Counter({200: 20})


class Load:
    """16 clients posting one row to the stable URL without pause; every answer is recorded
    as (status, answering version), a connection error as (0, its name)."""

    def __init__(self, body: dict[str, Any], clients: int = 16) -> None:
        self.results: list[tuple[int, str]] = []
        self._lock, self._stop = threading.Lock(), threading.Event()
        self._body = body
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def _client(self) -> None:
        with httpx.Client(base_url=url(), timeout=60) as c:
            while not self._stop.is_set():
                try:
                    resp = c.post("/predict", json=self._body)
                    item = (resp.status_code, resp.headers.get("x-nbdeploy-version", "?"))
                except httpx.HTTPError as exc:
                    item = (0, type(exc).__name__)
                with self._lock:
                    self.results.append(item)

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)

    def more(self, n: int) -> int:
        """Wait for ``n`` more answers; returns how many there were before."""
        before = len(self.results)
        wait_until(lambda: len(self.results) >= before + n, timeout=120, what=f"{n} answers")
        return before

    def versions(self, start: int, end: int | None = None) -> set[str]:
        return {v for _, v in self.results[start:end]}


IN_FLIGHT = 32  # answers that may still come from the old version after a switch (2 per client)


def test_switch_under_load_has_zero_failed_requests(ctx: Ctx) -> None:
    with Load({"rows": ctx.rows(10)}) as load:
        load.more(50)
        done = endpoint.switch(NAME, 1)  # v2 -> v1, then stop v2 as promote will
        assert (done["previous"], done["version"]) == (2, 1)
        api.stop(NAME, 2)
        load.more(100)
        api.start(NAME, 2)  # under load
        done = endpoint.switch(NAME, 2)
        api.stop(NAME, 1)
        n = load.more(100)
    results = load.results
    failures = [r for r in results if r[0] != 200]
    assert len(results) >= 300
    assert failures == []
    assert load.versions(0) == {"1", "2"}
    assert load.versions(n + IN_FLIGHT) == {"2"}  # after the last switch only v2 answers
    assert Registry().deployment(NAME)["serving_version"] == 2
    assert done["url"] == ctx.url_after_v1


def test_promote_and_rollback_under_load_have_zero_failed_requests(ctx: Ctx) -> None:
    with Load({"rows": ctx.rows(20)}) as load:
        load.more(50)
        promoted = api.promote(NAME, 1)  # v2 -> v1; promote stops v2's server
        assert promoted.version == 1
        after_promote = load.more(100)
        before_rollback = len(load.results)
        back = api.rollback(NAME)  # v1 -> v2, the version served before, started under load
        assert back.version == 2
        after_rollback = load.more(100)
    failures = [r for r in load.results if r[0] != 200]
    assert failures == []
    assert len(load.results) >= 250
    assert load.versions(after_promote + IN_FLIGHT, before_rollback) == {"1"}
    assert load.versions(after_rollback + IN_FLIGHT) == {"2"}
    assert Registry().deployment(NAME)["serving_version"] == 2
    assert Deployment(NAME, 1).status() != "serving"  # rollback stopped the version it left
    rollback = [e for e in Registry().events(NAME) if e["action"] == "rollback"][-1]
    assert (rollback["version"], rollback["detail"]) == (2, {"from": 1})
    assert predict(url(), ctx.rows(0)).headers["x-nbdeploy-version"] == "2"


def test_switch_refuses_a_rejected_version(ctx: Ctx) -> None:
    reg = Registry()
    reg.update_version(NAME, 1, status="rejected", reason="auc below 0.9")
    try:
        with pytest.raises(NbdeployError, match="v1 is rejected"):
            endpoint.switch(NAME, 1)
        with pytest.raises(SplitError, match="v1 is rejected"):
            endpoint.set_split(NAME, {1: 10, 2: 90})
        assert reg.deployment(NAME)["serving_version"] == 2
    finally:
        reg.update_version(NAME, 1, status="ready", reason=None)



def test_first_deploy_whose_server_fails_leaves_no_router(monkeypatch: pytest.MonkeyPatch) -> None:
    # the router starts beside the version's server; a server that cannot start takes it down
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise ServeError("the model server exited while starting (simulated)")

    monkeypatch.setattr(process, "start_server", refuse)
    X, y = load_iris(return_X_y=True, as_frame=True)
    with pytest.raises(ServeError, match="simulated"):
        api.deploy(LogisticRegression(max_iter=300).fit(X, y), "lonely", X)
    dep = Registry().deployment("lonely")
    assert dep["serving_version"] is None
    assert not endpoint.router_status("lonely")["running"]
    pid = dep.get("router_pid")
    assert not (pid and process.alive(pid))
