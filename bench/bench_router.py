"""Router overhead: 1-row /predict through the stable endpoint against the version's own server.

Setup: iris logistic regression, v1 and v2 both served by `bentoml serve`, the router of the
deployment in front of them, all on 127.0.0.1. Load: 16 concurrent keep-alive clients (one
asyncio/aiohttp process) sending 1-row /predict requests for ``SECONDS`` each.

Baseline: the same load sent straight to v2's `bentoml serve`, measured in the same run
(``ROUNDS`` times, interleaved with the router runs, and averaged, so drift in machine load
hits both). On a shared 2-core machine single runs swing by 2x; the CPU-per-request row,
read from /proc, is the steadier figure of the router's cost. A 50/50 split spreads the load
over two servers, so its ratio against one server can exceed 1.

Rows:
- through the router (prediction log on)                    target >= 0.85x direct
- through the router with a 50/50 split (log on)            target >= 0.85x direct
- CPU per request of the router process and of the version server (from /proc, so it does
  not depend on what else the machine runs)
- second routers forwarding with aiohttp and with httpx.AsyncClient instead of the raw
  httptools client (why the raw client is the default)
- switch(): moving the stable URL to an already running version, against starting a
  version's server (what a switch would cost without a warm standby)

Run: python -m bench.bench_router
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.workdir import in_workdir
from nbdeploy.serve.process import descendants

SECONDS = 10.0
CLIENTS = 16
ROUNDS = 3
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




def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time used so far by these processes."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def measure(url: str, body: bytes, watched: dict[str, list[int]]) -> dict[str, Any]:
    """Warm up for a second, then load ``url`` for ``SECONDS``; adds CPU ms per request of
    each watched set of processes."""
    asyncio.run(_load(url, body, 1.0))
    before = {k: cpu_seconds(p) for k, p in watched.items()}
    result = asyncio.run(_load(url, body, SECONDS))
    result["cpu_ms"] = {k: 1000 * (cpu_seconds(p) - before[k]) / result["n"] for k, p in watched.items()}
    return result


def _extra_router(port: int, client: str) -> subprocess.Popen:
    """A second, unregistered router of the same deployment that forwards with ``client``."""
    from nbdeploy import config
    from nbdeploy.serve import process

    cmd = [sys.executable, "-m", "nbdeploy.serve.router", NAME, "--port", str(port), "--client", client]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, env={**os.environ, "NBDEPLOY_HOME": str(config.home())})
    process.wait_ready(f"http://127.0.0.1:{port}", proc.pid, timeout=90)
    return proc


def _fmt(m: dict[str, Any]) -> str:
    latency = f"p50 {m['p50_ms']:.1f} ms, p99 {m['p99_ms']:.1f} ms"
    return f"{m['rps']:.0f} req/s ({latency}, {m['failures']} non-200)"


def _rates(runs: list[dict[str, Any]]) -> str:
    return ", ".join(f"{r['rps']:.0f}" for r in runs)


def _mean(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("rps", "p50_ms", "p99_ms")
    return {**{k: statistics.mean(r[k] for r in runs) for k in keys},
            "failures": sum(r["failures"] for r in runs)}


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
    reg = Registry()
    watched = {"router": [reg.deployment(NAME)["router_pid"]],
               "server": [pid := reg.version(NAME, 2)["pid"], *descendants(pid)]}
    direct = str(Deployment(NAME, 2).url)
    body = json.dumps({"rows": X.iloc[:1].to_dict(orient="records")}).encode()
    extras: list[subprocess.Popen] = []
    try:
        runs: dict[str, list[dict[str, Any]]] = {"direct": [], "router": []}
        for _ in range(ROUNDS):  # interleaved, so a change in machine load hits both
            runs["direct"].append(measure(f"{direct}/predict", body, watched))
            runs["router"].append(measure(f"{router}/predict", body, watched))
        endpoint.set_split(NAME, {1: 50, 2: 50})
        split = measure(f"{router}/predict", body, watched)
        endpoint.set_split(NAME, None)
        others = {}
        for client in ("aiohttp", "httpx"):
            port = process.free_port()
            extras.append(_extra_router(port, client))
            others[client] = measure(f"http://127.0.0.1:{port}/predict", body,
                                     {"router": [extras[-1].pid]})
        switches = [endpoint.switch(NAME, target)["seconds"] for target in (1, 2, 1, 2)]
    finally:
        for extra in extras:
            process.stop_pid(extra.pid, grace=3.0)
        for row in reg.versions(NAME):
            process.stop_pid(row.get("pid"), grace=3.0)
        endpoint.stop_router(NAME)
    base, via = _mean(runs["direct"]), _mean(runs["router"])
    direct_text = (f"{base['rps']:.0f} req/s direct to bentoml serve "
                   f"(runs: {_rates(runs['direct'])})")
    router_cpu = statistics.mean(r["cpu_ms"]["router"] for r in runs["router"])
    server_cpu = statistics.mean(r["cpu_ms"]["server"] for r in runs["direct"])
    switch_s = statistics.median(switches)
    rows = [
        {"benchmark": f"1-row /predict, {CLIENTS} clients, {SECONDS:.0f} s, through the router (log on)",
         "figure": _fmt(via) + f" (runs: {_rates(runs['router'])})",
         "baseline": direct_text, "ratio": round(via["rps"] / base["rps"], 2), "target": ">= 0.85x direct",
         "met": via["rps"] >= 0.85 * base["rps"]},
        {"benchmark": "same, router with a 50/50 split over v1 and v2 (log on)", "figure": _fmt(split),
         "baseline": direct_text, "ratio": round(split["rps"] / base["rps"], 2), "target": ">= 0.85x direct",
         "met": split["rps"] >= 0.85 * base["rps"]},
        {"benchmark": "CPU per request: router process (raw client, log on) vs the version server",
         "figure": f"{router_cpu:.2f} ms", "baseline": f"{server_cpu:.2f} ms (bentoml serve, same requests)",
         "ratio": round(router_cpu / server_cpu, 2), "target": "informational (lower is better)"},
    ]
    for client, m in others.items():
        rows.append({
            "benchmark": f"same load, a router forwarding with {client} instead of the raw client",
            "figure": _fmt(m) + f", router CPU {m['cpu_ms']['router']:.2f} ms/request",
            "baseline": direct_text, "ratio": round(m["rps"] / base["rps"], 2),
            "target": "informational (compare with the first row)"})
    rows.append({
        "benchmark": "switch(): stable URL to an already running version, confirmed by the router",
        "figure": f"{switch_s:.2f} s (median of {', '.join(f'{x:.2f}' for x in switches)})",
        "baseline": f"{start_s:.2f} s to start a version's bentoml serve until /readyz",
        "ratio": round(switch_s / start_s, 2), "target": "< 0.5 s", "met": switch_s < 0.5})
    return rows


def run() -> list[dict[str, Any]]:
    """Measure everything in this run and return the benchmark rows."""
    return in_workdir("bench-router-", _run)


def main() -> None:
    for row in run():
        print(json.dumps(row))


if __name__ == "__main__":
    main()
