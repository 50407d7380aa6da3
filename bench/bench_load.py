"""Sustained load on the generated service, and the same load while versions change under it.

Setup: the mixed-dtype gradient-boosting pipeline of the tests (tests/helpers/fault_deploy.py),
v1 and v2 deployed (v2 serving) and the deployment's router (the stable endpoint,
``endpoint.ensure_router``) in front of them, all on 127.0.0.1. Load: ``bench.load.run_load``
(wrk when installed), 16 keep-alive clients POSTing one 1-row /predict body for 60 s.

Rows:
- 60 s straight to v2's `bentoml serve` (target: 0 failed requests);
- 60 s through the stable endpoint (target: 0 failed; ratio = req/s against the direct run);
- 60 s through the stable endpoint while, at 15 s, ``api.rollback`` makes v1 serve (stopping
  v2), at 30 s ``endpoint.set_split({1: 50, 2: 50})`` starts v2 again and splits, at 45 s
  ``set_split(None)`` ends the split (target: 0 failed; ratio against the steady router run);
- one lone 1-row request's latency after three 10 000-row requests, against the same before them
  (median of 15 sequential requests each; target <= 2x): BentoML's adaptive batcher cuts a big
  request into ``max_batch_size`` chunks, learns their queueing time as the wait to hold every
  later request for, and each held request feeds that wait back (measured with the template of
  commit fc1c036: 0.1 s before, 1.3 s after one big request, 3.3 s after three, still 3.6 s 10 s
  later).

Run: python -m bench.bench_load
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.load import LoadResult, run_load
from bench.workdir import in_workdir

ROOT = Path(__file__).resolve().parent.parent
SECONDS = 60.0
CLIENTS = 16
NAME = "bench-load"
CHANGES = ((15.0, "rollback to v1"), (30.0, "split v1 50 / v2 50"), (45.0, "split off"))


def _fmt(r: LoadResult) -> str:
    return (f"{r.requests} requests, {r.errors} failed, {r.rps:.0f} req/s, p50 {r.p50_ms:.1f} ms, "
            f"p99 {r.p99_ms:.1f} ms ({r.tool}, {r.seconds:.0f} s)")


def _lone_latency(url: str, body: dict[str, Any], n: int = 15) -> float:
    """Median seconds of ``n`` sequential requests (one client, nothing else in flight)."""
    times = []
    with httpx.Client(timeout=120) as client:
        for _ in range(n):
            t0 = time.perf_counter()
            resp = client.post(url, json=body)
            times.append(time.perf_counter() - t0)
            resp.raise_for_status()
    return statistics.median(times)


def _under_changes(router: str, body: dict[str, Any]) -> tuple[LoadResult, list[str]]:
    """Load the stable endpoint for SECONDS while the changes happen at their times."""
    from nbdeploy import api
    from nbdeploy.serve import endpoint

    box: dict[str, Any] = {}
    loader = threading.Thread(
        target=lambda: box.setdefault("result", run_load(f"{router}/predict", body, seconds=SECONDS,
                                                         clients=CLIENTS)))
    started = time.perf_counter()
    loader.start()
    done: list[str] = []
    actions = {"rollback to v1": lambda: api.rollback(NAME),
               "split v1 50 / v2 50": lambda: endpoint.set_split(NAME, {1: 50, 2: 50}),
               "split off": lambda: endpoint.set_split(NAME, None)}
    for at, what in CHANGES:
        time.sleep(max(0.0, at - (time.perf_counter() - started)))
        t0 = time.perf_counter()
        actions[what]()
        done.append(f"{what} at {t0 - started:.0f} s ({time.perf_counter() - t0:.1f} s)")
    loader.join()
    return box["result"], done


def _run(work: Path) -> list[dict[str, Any]]:
    os.environ["NBDEPLOY_HOME"] = str(work / "nbdeploy")
    os.environ["BENTOML_HOME"] = str(work / "bentoml")
    os.environ["BENTOML_DO_NOT_TRACK"] = "true"
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.helpers.fault_deploy import mixed_classifier

    from nbdeploy import api
    from nbdeploy.deployment import Deployment
    from nbdeploy.registry import Registry
    from nbdeploy.serve import endpoint, process

    m1, X = mixed_classifier(15)
    m2, _ = mixed_classifier(25)
    api.deploy(m1, NAME, X)
    api.deploy(m2, NAME, X)
    router = endpoint.ensure_router(NAME)
    direct = str(Deployment(NAME, 2).url)
    body = {"rows": json.loads(X.iloc[:1].to_json(orient="records"))}
    big = {"rows": json.loads(X.sample(10_000, replace=True, random_state=0).to_json(orient="records"))}
    try:
        run_load(f"{direct}/predict", body, seconds=2, clients=CLIENTS)  # warm-up
        plain = run_load(f"{direct}/predict", body, seconds=SECONDS, clients=CLIENTS)
        steady = run_load(f"{router}/predict", body, seconds=SECONDS, clients=CLIENTS)
        changing, done = _under_changes(router, body)
        serving = Registry().deployment(NAME)["serving_version"]
        last = f"{Deployment(NAME, serving).url}/predict"  # last, so its batcher state harms nothing
        before = _lone_latency(last, body)
        for _ in range(3):
            httpx.post(last, json=big, timeout=300).raise_for_status()
        after = _lone_latency(last, body)
    finally:
        reg = Registry()
        for row in reg.versions(NAME):
            process.stop_pid(row.get("pid"), grace=3.0)
        endpoint.stop_router(NAME)
    return [
        {"benchmark": f"1-row /predict, {CLIENTS} clients, {SECONDS:.0f} s, straight to bentoml serve",
         "figure": _fmt(plain), "baseline": "0 failed requests", "ratio": None,
         "target": "0 failed requests", "met": plain.errors == 0},
        {"benchmark": "same through the stable endpoint (router)", "figure": _fmt(steady),
         "baseline": f"{plain.rps:.0f} req/s straight to bentoml serve",
         "ratio": round(steady.rps / plain.rps, 2) if plain.rps else None,
         "target": "0 failed requests", "met": steady.errors == 0},
        {"benchmark": "same while api.rollback (15 s), set_split 50/50 (30 s) and split off (45 s) happen",
         "figure": _fmt(changing) + "; " + "; ".join(done) + f"; serving v{serving} at the end",
         "baseline": f"{steady.rps:.0f} req/s through the router with no change",
         "ratio": round(changing.rps / steady.rps, 2) if steady.rps else None,
         "target": "0 failed requests", "met": changing.errors == 0},
        {"benchmark": "lone 1-row request after three 10 000-row requests (median of 15, serving version)",
         "figure": f"{after * 1000:.0f} ms", "baseline": f"{before * 1000:.0f} ms before it",
         "ratio": round(after / before, 2), "target": "<= 2x", "met": after <= 2 * before},
    ]


def run() -> list[dict[str, Any]]:
    """Deploy, load, change versions under load; return the benchmark rows."""
    return in_workdir("bench-load-", _run)


def main() -> None:
    for row in run():
        print(json.dumps(row))


if __name__ == "__main__":
    main()
