"""The jupyter_server extension's REST API, through a real server (pytest_jupyter).

pytest_jupyter's fixtures are imported into this module rather than enabled with
``pytest_plugins``: that would make its autouse fixtures (event loop, ServerApp cleanup)
run around every test of the suite. The tests are plain functions driving its loop."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403  (jp_fetch, jp_serverapp, ...)
from tornado.httpclient import HTTPResponse

import nbdeploy.api as api
from nbdeploy.registry import Registry

API = ("nbdeploy", "api")


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    """Load only our extension, and refuse any handler that is not authenticated."""
    return {
        "ServerApp": {
            "jpserver_extensions": {"nbdeploy.server": True},
            "allow_unauthenticated_access": False,
        }
    }


@pytest.fixture
def acall(jp_fetch: Any) -> Any:
    """``await acall("GET", "deployments")`` → (status, JSON body), never raising on 4xx."""

    async def _call(method: str, *parts: str, body: Any = None, raw: bytes | None = None,
                    headers: dict[str, str] | None = None) -> tuple[int, Any]:
        kwargs: dict[str, Any] = {"method": method, "raise_error": False}
        if method == "POST":
            kwargs["body"] = raw if raw is not None else json.dumps(body if body is not None else {})
        resp: HTTPResponse = await jp_fetch(*API, *parts, headers=headers, **kwargs)
        text = resp.body.decode() if resp.body else ""
        try:
            return resp.code, json.loads(text) if text else None
        except ValueError:
            return resp.code, text

    return _call


@pytest.fixture
def call(acall: Any, jp_asyncio_loop: Any) -> Any:
    """``call("GET", "deployments")``: acall run to completion on the server's loop."""
    return lambda *args, **kw: jp_asyncio_loop.run_until_complete(acall(*args, **kw))


def _iris(c: float = 1.0) -> tuple[Any, Any]:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True, as_frame=True)
    return LogisticRegression(max_iter=500, C=c).fit(X, y), X


def _stop_all(name: str) -> None:
    for row in Registry().versions(name):
        api.stop(name, row["version"])


@pytest.fixture
def registered() -> Iterator[str]:
    """A real deployment 'iris' with one registered, not served, version."""
    model, X = _iris()
    api.deploy(model, "iris", X, serve=False)
    try:
        yield "iris"
    finally:
        _stop_all("iris")


@pytest.fixture
def served() -> Iterator[str]:
    """A real deployment 'iris': v1 ready (stopped), v2 serving; servers stopped at the end."""
    model, X = _iris()
    api.deploy(model, "iris", X)
    model2, _ = _iris(c=0.1)
    api.deploy(model2, "iris", X)
    try:
        yield "iris"
    finally:
        _stop_all("iris")


# -- authentication ----------------------------------------------------------------------

@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "deployments"), ("GET", "deployments/iris"), ("POST", "deployments/iris/stop"),
     ("GET", "deployments/iris/drift"), ("POST", "deployments/iris/split")],
)
def test_unauthenticated_requests_are_refused(call: Any, method: str, path: str) -> None:
    status, _ = call(method, *path.split("/"), headers={"Authorization": ""})
    assert status in (401, 403)


# -- listing and detail ----------------------------------------------------------------

def test_list_is_empty_before_any_deploy(call: Any) -> None:
    assert call("GET", "deployments") == (200, {"deployments": []})


def test_unknown_deployment_is_404_naming_it(call: Any) -> None:
    status, body = call("GET", "deployments", "nosuch")
    assert status == 404
    assert "nosuch" in body["error"]


def test_invalid_name_is_400_naming_the_field(call: Any) -> None:
    status, body = call("GET", "deployments", "Bad Name!")
    assert status == 400
    assert body["field"] == "name"
    assert "Bad Name!" in body["error"]


def test_unknown_endpoint_is_a_json_404(call: Any) -> None:
    status, body = call("GET", "deployments", "iris", "explode")
    assert status == 404
    assert body["field"] == "path"


def test_detail_has_versions_lineage_and_events(registered: str, call: Any) -> None:
    status, listing = call("GET", "deployments")
    assert status == 200
    [dep] = listing["deployments"]
    assert dep["name"] == "iris" and dep["version"] == 1 and dep["status"] == "stopped"

    status, detail = call("GET", "deployments", "iris")
    assert status == 200
    assert detail["summary"]["name"] == "iris"
    [v1] = detail["versions"]
    assert v1["version"] == 1 and v1["state"] == "ready" and v1["status"] == "stopped"
    assert v1["created_by"] == "tester"
    assert v1["lineage"]["data_rows"] == 150
    assert v1["validation_runs"] == []
    assert [e["action"] for e in detail["events"]] == ["deploy"]


# -- actions: bad input ----------------------------------------------------------------

@pytest.mark.parametrize(
    ("body", "field"),
    [({"version": "x"}, "version"), ({"version": 1.5}, "version"), ({"version": True}, "version"),
     ({"version": 0}, "version"), ({"verison": 1}, "verison")],
)
def test_action_with_bad_version_is_400_naming_it(
    registered: str, call: Any, body: dict, field: str
) -> None:
    status, answer = call("POST", "deployments", "iris", "start", body=body)
    assert status == 400
    assert answer["field"] == field
    assert field in answer["error"]


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'"v"'])
def test_action_with_a_body_that_is_not_an_object_is_400(call: Any, raw: bytes) -> None:
    status, answer = call("POST", "deployments", "iris", "stop", raw=raw)
    assert status == 400
    assert answer["field"] == "body"


def test_promote_needs_a_version(registered: str, call: Any) -> None:
    status, answer = call("POST", "deployments", "iris", "promote", body={})
    assert status == 400
    assert answer["field"] == "version"


def test_action_on_unknown_version_or_deployment_is_404(registered: str, call: Any) -> None:
    status, answer = call("POST", "deployments", "iris", "promote", body={"version": 9})
    assert status == 404
    assert "no version 9" in answer["error"]
    status, answer = call("POST", "deployments", "nosuch", "stop")
    assert status == 404


def test_promote_refuses_a_rejected_version(registered: str, call: Any) -> None:
    Registry().update_version("iris", 1, status="rejected", reason="accuracy 0.3 < 0.9")
    status, answer = call("POST", "deployments", "iris", "promote", body={"version": 1})
    assert status == 409
    assert "rejected" in answer["error"] and "accuracy 0.3" in answer["error"]


def test_rollback_without_an_earlier_version_is_400(registered: str, call: Any) -> None:
    Registry().update_version("iris", 1, status="serving")
    Registry().update_deployment("iris", serving_version=1)
    status, answer = call("POST", "deployments", "iris", "rollback")
    assert status == 400
    assert "no earlier good version" in answer["error"]


# -- actions: the loop stays free ----------------------------------------------------------

def test_a_running_action_neither_blocks_reads_nor_runs_twice(
    registered: str, acall: Any, jp_asyncio_loop: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    entered, release = threading.Event(), threading.Event()

    def held_start(name: str, version: int | None = None, **kw: Any) -> Any:
        entered.set()
        assert release.wait(60), "the test never released the start"
        return api.get(name)

    monkeypatch.setattr(api, "start", held_start)

    async def scenario() -> None:
        pending = asyncio.ensure_future(acall("POST", "deployments", "iris", "start"))
        try:
            while not entered.is_set():
                await asyncio.sleep(0.05)
            # the start is held in its thread: reads still answer, a second action is refused
            status, listing = await acall("GET", "deployments")
            assert status == 200 and listing["deployments"][0]["name"] == "iris"
            status, answer = await acall("POST", "deployments", "iris", "stop")
            assert status == 409
            assert "start of iris is still running" in answer["error"]
            assert not pending.done()
        finally:
            release.set()
        status, answer = await pending
        assert status == 200 and answer["action"] == "start"

    jp_asyncio_loop.run_until_complete(scenario())


# -- actions: real servers ----------------------------------------------------------------

@pytest.mark.slow
def test_stop_start_rollback_promote_drive_real_servers(served: str, call: Any) -> None:
    import httpx

    status, listing = call("GET", "deployments")
    [dep] = listing["deployments"]
    assert (dep["serving_version"], dep["status"]) == (2, "serving")

    status, answer = call("POST", "deployments", "iris", "stop")
    assert status == 200 and answer["stopped"] is True
    assert answer["deployment"]["status"] in ("stopped", "down")

    status, answer = call("POST", "deployments", "iris", "start", body={"version": 2})
    assert status == 200 and answer["deployment"]["status"] == "serving"

    status, answer = call("POST", "deployments", "iris", "rollback")
    assert status == 200, answer
    assert answer["deployment"]["version"] == 1
    assert Registry().deployment("iris")["serving_version"] == 1
    meta = httpx.get(f"{answer['deployment']['endpoint']}/metadata", timeout=10).json()
    assert meta["version"] == 1

    status, detail = call("GET", "deployments", "iris")
    states = {v["version"]: (v["state"], v["status"]) for v in detail["versions"]}
    assert states[1] == ("serving", "serving")
    assert states[2][0] == "ready" and states[2][1] != "serving"

    status, answer = call("POST", "deployments", "iris", "promote", body={"version": 2})
    assert status == 200 and answer["deployment"]["version"] == 2
    assert Registry().deployment("iris")["serving_version"] == 2


# -- split, KPIs, drift ---------------------------------------------------------------------

@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("GET", "split", None), ("POST", "split", {"weights": {"1": 100}}),
     ("GET", "kpis", None), ("GET", "drift", None)],
)
def test_missing_core_features_answer_501(
    registered: str, call: Any, monkeypatch: pytest.MonkeyPatch, method: str, path: str,
    body: Any,
) -> None:
    for func in ("split", "get_split", "kpis", "drift"):
        monkeypatch.delattr(api, func, raising=False)
    status, answer = call(method, "deployments", "iris", path, body=body)
    assert status == 501
    assert "not available in this version" in answer["error"]


@pytest.mark.parametrize(
    "weights",
    [None, {}, [90, 10], {"x": 10}, {"0": 100}, {"3": -1}, {"3": "90"}, {"3": True}, {"3": 0}],
)
def test_split_with_bad_weights_is_400_naming_weights(call: Any, weights: Any) -> None:
    status, answer = call("POST", "deployments", "iris", "split", body={"weights": weights})
    assert status == 400
    assert answer["field"] == "weights"


def test_split_passes_integer_weights_to_the_core(
    registered: str, call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str, dict]] = []
    monkeypatch.setattr(api, "split", lambda name, weights: seen.append((name, weights)) or weights,
                        raising=False)
    status, answer = call("POST", "deployments", "iris", "split",
                                body={"weights": {"1": 90, "v2": 10}})
    assert status == 200
    assert seen == [("iris", {1: 90, 2: 10})]
    assert answer["weights"] == {"1": 90, "2": 10}


def test_drift_report_objects_become_json(
    registered: str, call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nbdeploy.monitor.drift import DriftReport, FeatureDrift

    feature = FeatureDrift(name="petal width (cm)", kind="numeric", psi=float("nan"), test="ks",
                           statistic=0.5, p_value=0.001, drifted=True, verdict="drift",
                           reason="p < alpha", n_reference=150, n_current=40)
    report = DriftReport(features=[feature], drifted=["petal width (cm)"], verdict="drift",
                         n_reference=150, n_current=40)
    monkeypatch.setattr(api, "drift", lambda name: report, raising=False)
    status, answer = call("GET", "deployments", "iris", "drift")
    assert status == 200
    assert answer["verdict"] == "drift"
    assert answer["features"][0]["psi"] is None
    assert answer["features"][0]["p_value"] == 0.001
