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
REQUEST_TIMEOUT = 300.0


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
        # actions start real servers: allow them longer than tornado's 20 s default
        kwargs: dict[str, Any] = {"method": method, "raise_error": False,
                                  "request_timeout": REQUEST_TIMEOUT}
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

ROUTES = [
    ("GET", "deployments"), ("GET", "deployments/iris"), ("GET", "deployments/iris/versions"),
    ("GET", "deployments/iris/status"), ("GET", "deployments/iris/split"),
    ("GET", "deployments/iris/kpis"), ("GET", "deployments/iris/drift"),
    ("GET", "deployments/iris/alerts"), ("GET", "nosuch"),
    ("POST", "deployments/iris/start"), ("POST", "deployments/iris/stop"),
    ("POST", "deployments/iris/promote"), ("POST", "deployments/iris/rollback"),
    ("POST", "deployments/iris/split"), ("POST", "nosuch"),
]
# Only the handlers' own @authenticated stands between an anonymous client and the API:
# the server allows unauthenticated handlers and skips the XSRF check.
OPEN_SERVER = {"ServerApp": {"jpserver_extensions": {"nbdeploy.server": True},
                             "allow_unauthenticated_access": True,
                             "disable_check_xsrf": True}}


@pytest.mark.parametrize("jp_server_config", [OPEN_SERVER])
@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_route_and_method_refuses_anonymous_requests(
    registered: str, call: Any, method: str, path: str
) -> None:
    status, _ = call(method, *path.split("/"), headers={"Authorization": ""})
    assert status in (401, 403)


@pytest.mark.parametrize("jp_server_config", [OPEN_SERVER])
def test_the_same_routes_answer_with_the_token(registered: str, call: Any) -> None:
    """The refusals above come from authentication, not from a broken route."""
    assert call("GET", "deployments")[0] == 200
    assert call("GET", "deployments", "iris", "status")[0] == 200
    assert call("POST", "deployments", "iris", "promote", body={})[0] == 400


def test_every_handler_method_is_wrapped_by_tornado_authenticated() -> None:
    import tornado.web

    from nbdeploy.server.handlers import routes

    wrapper_code = tornado.web.authenticated(lambda self: None).__code__
    handlers = {handler for _, handler in routes("/")}
    checked = 0
    for handler in handlers:
        for verb in ("get", "post", "put", "patch", "delete"):
            method = handler.__dict__.get(verb)
            if method is None:
                continue
            assert method.__code__ is wrapper_code, f"{handler.__name__}.{verb} is not authenticated"
            checked += 1
    assert checked >= 9


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


# -- split, KPIs, drift, alerts, versions, status: real servers ------------------------------

@pytest.mark.slow
def test_kpis_drift_alerts_and_split_of_a_served_deployment(served: str, call: Any) -> None:
    from nbdeploy import monitoring

    _, X = _iris()
    dep = api.get("iris")
    for _ in range(12):
        assert len(dep.predict(X.head(3))) == 3

    status, kpis = call("GET", "deployments", "iris", "kpis")
    assert status == 200, kpis
    assert kpis["2"]["requests"] >= 12
    assert kpis["2"]["error_rate"] == 0

    status, drift = call("GET", "deployments", "iris", "drift")
    assert status == 200, drift
    assert drift["verdict"] == monitoring.drift("iris").verdict
    assert {f["name"] for f in drift["features"]} == set(X.columns)

    monitoring.set_alerts("iris", ["p99_ms>0", "error_rate>0.5"])
    status, alerts = call("GET", "deployments", "iris", "alerts")
    assert status == 200, alerts
    assert alerts["rules"] == ["p99_ms>0", "error_rate>0.5"]
    assert alerts["count"] == 1
    assert alerts["firing"][0]["rule"] == "p99_ms>0" and alerts["firing"][0]["version"] == 2
    [row] = call("GET", "deployments")[1]["deployments"]
    assert row["alerts"]["rules"] == 2 and row["alerts"]["firing"] == 1
    assert "p99 latency" in row["alerts"]["messages"][0]

    status, answer = call("POST", "deployments", "iris", "split",
                          body={"weights": {"1": 30, "2": 70}})
    assert status == 200, answer
    status, got = call("GET", "deployments", "iris", "split")
    assert status == 200 and got["split"] == {"1": 30, "2": 70}
    assert Registry().deployment("iris")["split"] == {"1": 30, "2": 70} or \
        Registry().deployment("iris")["split"] == {1: 30, 2: 70}
    [row] = call("GET", "deployments")[1]["deployments"]
    assert row["split"] in ({"1": 30, "2": 70}, {1: 30, 2: 70})

    status, answer = call("POST", "deployments", "iris", "split", body={"weights": {"9": 100}})
    assert status == 404 and "9" in answer["error"]

    status, versions = call("GET", "deployments", "iris", "versions")
    assert status == 200 and [v["version"] for v in versions["versions"]] == [1, 2]
    assert all(v["status"] == "serving" for v in versions["versions"])  # the split serves both
    status, live = call("GET", "deployments", "iris", "status")
    assert status == 200 and (live["serving_version"], live["status"]) == (2, "serving")


@pytest.mark.parametrize("part", ["kpis", "drift", "alerts", "split", "versions", "status"])
def test_reads_of_an_unknown_or_invalid_name_are_404_or_400(call: Any, part: str) -> None:
    status, answer = call("GET", "deployments", "nosuch", part)
    assert status == 404 and "nosuch" in answer["error"]
    status, answer = call("GET", "deployments", "Bad Name!", part)
    assert status == 400 and answer["field"] == "name"


def test_alerts_of_a_deployment_without_rules(registered: str, call: Any) -> None:
    status, answer = call("GET", "deployments", "iris", "alerts")
    assert status == 200
    assert answer == {"name": "iris", "rules": [], "firing": [], "count": 0}
    [row] = call("GET", "deployments")[1]["deployments"]
    assert row["alerts"] == {"rules": 0, "firing": 0, "messages": []}


def test_detail_shows_a_stored_reproduce_verdict(registered: str, call: Any) -> None:
    lineage = Registry().version("iris", 1)["lineage"]
    verdict = {"status": "exact", "verdict": "exact", "notebook": "train.ipynb", "at": 1.0}
    Registry().update_version("iris", 1, lineage={**lineage, "reproduce": verdict})
    [v1] = call("GET", "deployments", "iris")[1]["versions"]
    assert v1["reproduce"]["verdict"] == "exact"
    assert v1["lineage"]["data_rows"] == 150


# -- split, KPIs, drift: features and bad input --------------------------------------------

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
