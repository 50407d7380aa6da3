"""Router overhead: 1-row /predict through the stable endpoint against the version's own server.

Setup: iris logistic regression, v1 and v2 both served by `bentoml serve`, the router of the
deployment in front of them, all on 127.0.0.1. Load: 16 concurrent keep-alive clients (one
asyncio/aiohttp process) sending 1-row /predict requests for ``SECONDS`` each.

Baseline: the same load sent straight to v2's `bentoml serve`, measured in the same run
(twice, interleaved with the router runs, and averaged, so drift in machine load hits both).

Rows:
- through the router (prediction log on)                    target >= 0.85x direct
- through the router with a 50/50 split (log on)            target >= 0.85x direct
- a second router using httpx.AsyncClient instead of aiohttp (why aiohttp is the default)
- switch(): moving the stable URL to an already running version, against starting a
  version's server (what a switch would cost without a warm standby)

Run: python -m bench.bench_router
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SECONDS = 10.0
CLIENTS = 16
NAME = "bench-router"


async def _load(url: str, body: bytes, seconds: float, clients: int = CLIENTS) -> dict[str, Any]:
    """Closed-loop load: ``clients`` tasks, each sending the next request when answered."""
    import aiohttp

    latencies: list[float] = []
    failures = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:
        stop = time.perf_counter() + seconds

        async def client() -> None:
            nonlocal failures
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                async with session.post(url, data=body,
                                        headers={"content-type": "application/json"}) as resp:
                    await resp.read()
                    failures += resp.status != 200
                latencies.append(time.perf_counter() - t0)

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        wall = time.perf_counter() - started
    latencies.sort()
    return {"rps": len(latencies) / wall, "n": len(latencies), "failures": failures,
            "p50_ms": 1000 * latencies[len(latencies) // 2],
            "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)]}


def measure(url: str, body: bytes, seconds: float = SECONDS) -> dict[str, Any]:
    """Warm up for a second, then load ``url`` for ``seconds``."""
    asyncio.run(_load(url, body, 1.0))
    return asyncio.run(_load(url, body, seconds))


def _httpx_router(port: int) -> subprocess.Popen:
    """A second, unregistered router of the same deployment that forwards with httpx."""
    from nbdeploy import config
    from nbdeploy.serve import process

    cmd = [sys.executable, "-m", "nbdeploy.serve.router", NAME, "--port", str(port), "--client", "httpx"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, env={**os.environ, "NBDEPLOY_HOME": str(config.home())})
    process.wait_ready(f"http://127.0.0.1:{port}", proc.pid, timeout=90)
    return proc


def _fmt(m: dict[str, Any]) -> str:
    latency = f"p50 {m['p50_ms']:.1f} ms, p99 {m['p99_ms']:.1f} ms"
    return f"{m['rps']:.0f} req/s ({latency}, {m['failures']} non-200)"


def _run(work: Path) -> list[dict[str, Any]]:
    os.environ["NBDEPLOY_HOME"] = str(work / "nbdeploy")
    os.environ["BENTOML_HOME"] = str(work / "bentoml")
    os.environ["BENTOML_DO_NOT_TRACK"] = "true"
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from nbdeploy import api
    from nbdeploy.deployment import Deployment
    from nbdeploy.registry import Registry
    from nbdeploy.serve import endpoint, process

    X, y = load_iris(return_X_y=True, as_frame=True)
    api.deploy(LogisticRegression(max_iter=500).fit(X, y), NAME, X)
    api.deploy(LogisticRegression(max_iter=500, C=0.05).fit(X, y), NAME, X)
    t0 = time.perf_counter()
    api.start(NAME, 1)
    start_s = time.perf_counter() - t0
    router = endpoint.ensure_router(NAME)
    direct = str(Deployment(NAME, 2).url)
    body = json.dumps({"rows": X.iloc[:1].to_dict(orient="records")}).encode()
    extra = None
    try:
        d1 = measure(f"{direct}/predict", body)
        r1 = measure(f"{router}/predict", body)
        d2 = measure(f"{direct}/predict", body)
        r2 = measure(f"{router}/predict", body)
        endpoint.set_split(NAME, {1: 50, 2: 50})
        split = measure(f"{router}/predict", body)
        endpoint.set_split(NAME, None)
        port = process.free_port()
        extra = _httpx_router(port)
        via_httpx = measure(f"http://127.0.0.1:{port}/predict", body)
        switches = []
        for target in (1, 2, 1, 2):
            switches.append(endpoint.switch(NAME, target)["seconds"])
    finally:
        if extra is not None:
            process.stop_pid(extra.pid, grace=3.0)
        reg = Registry()
        for row in reg.versions(NAME):
            process.stop_pid(row.get("pid"), grace=3.0)
        endpoint.stop_router(NAME)
    base = (d1["rps"] + d2["rps"]) / 2
    via = {"rps": (r1["rps"] + r2["rps"]) / 2, "p50_ms": (r1["p50_ms"] + r2["p50_ms"]) / 2,
           "p99_ms": (r1["p99_ms"] + r2["p99_ms"]) / 2, "failures": r1["failures"] + r2["failures"]}
    direct_text = f"{base:.0f} req/s direct to bentoml serve (runs: {d1['rps']:.0f}, {d2['rps']:.0f})"
    switch_s = statistics.median(switches)
    return [
        {"benchmark": f"1-row /predict, {CLIENTS} clients, {SECONDS:.0f} s, through the router (log on)",
         "figure": _fmt(via) + f" (runs: {r1['rps']:.0f}, {r2['rps']:.0f})", "baseline": direct_text,
         "ratio": round(via["rps"] / base, 2), "target": ">= 0.85x direct"},
        {"benchmark": "same, router with a 50/50 split over v1 and v2 (log on)",
         "figure": _fmt(split), "baseline": direct_text,
         "ratio": round(split["rps"] / base, 2), "target": ">= 0.85x direct"},
        {"benchmark": "same, a router forwarding with httpx.AsyncClient instead of aiohttp",
         "figure": _fmt(via_httpx), "baseline": direct_text,
         "ratio": round(via_httpx["rps"] / base, 2), "target": "informational (below aiohttp's row)"},
        {"benchmark": "switch(): stable URL to an already running version, confirmed by the router",
         "figure": f"{switch_s:.2f} s (median of {', '.join(f'{s:.2f}' for s in switches)})",
         "baseline": f"{start_s:.2f} s to start a version's bentoml serve until /readyz",
         "ratio": round(switch_s / start_s, 2), "target": "< 0.5 s"},
    ]


def run() -> list[dict[str, Any]]:
    """Measure everything in this run and return the benchmark rows."""
    work = Path(tempfile.mkdtemp(prefix="bench-router-"))
    saved = {k: os.environ.get(k) for k in ("NBDEPLOY_HOME", "BENTOML_HOME", "BENTOML_DO_NOT_TRACK")}
    try:
        return _run(work)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    for row in run():
        print(json.dumps(row))


if __name__ == "__main__":
    main()
