"""A short load run against a live generated service: 16 concurrent clients for about 10 s, no
failed request, the answers still right afterwards. Latency figures are printed, never asserted
(speed goals live in bench/bench_load.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from bench.load import run_load

from tests.helpers.fault_deploy import mixed_classifier

pytestmark = pytest.mark.slow

CLIENTS = 16
SECONDS = 10.0


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from nbdeploy import api
    from nbdeploy.registry import Registry
    from nbdeploy.serve import process

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NBDEPLOY_HOME", str(tmp_path_factory.mktemp("load") / "nbdeploy"))
        mp.setenv("BENTOML_DO_NOT_TRACK", "true")
        model, X = mixed_classifier()
        dep = api.deploy(model, "load", X)
        pid, url = dep.row["pid"], str(dep.url)
        router = Registry().deployment("load").get("router_pid")
    try:
        yield {"url": url, "model": model, "X": X}
    finally:
        process.stop_pid(router, grace=3.0)
        process.stop_pid(pid, grace=5.0)


def _records(X: Any) -> list[dict[str, Any]]:
    return json.loads(X.to_json(orient="records"))


@pytest.mark.parametrize(("route", "rows"), [("predict", 1), ("predict", 20), ("predict_proba", 1)])
def test_concurrent_clients_get_no_failed_request(
    served: dict[str, Any], capsys: pytest.CaptureFixture[str], route: str, rows: int
) -> None:
    X = served["X"]
    body = {"rows": _records(X.iloc[:rows])}
    warm = httpx.post(f"{served['url']}/{route}", json=body, timeout=60)
    assert warm.status_code == 200, warm.text

    result = run_load(f"{served['url']}/{route}", body, seconds=SECONDS, clients=CLIENTS)
    with capsys.disabled():
        print(f"\nload /{route} {rows} row(s), {CLIENTS} clients, {result.seconds:.1f} s ({result.tool}): "
              f"{result.requests} requests, {result.errors} failed, {result.rps:.0f} req/s, "
              f"p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms")
    assert result.requests > CLIENTS and result.errors == 0

    # the answers under no load are still the model's own
    probe = X.sample(50, random_state=1)
    resp = httpx.post(f"{served['url']}/predict", json={"rows": _records(probe)}, timeout=60)
    assert resp.status_code == 200
    np.testing.assert_array_equal(np.asarray(resp.json()), served["model"].predict(probe))
