"""A bounded load generator: N concurrent clients POST one JSON body to a loopback URL for S seconds.

Uses ``wrk`` with a Lua script when /usr/bin/wrk exists (a C client: little CPU taken from
the server on a 2-core machine); otherwise threads with keep-alive ``http.client``
connections. Only 127.0.0.1 / localhost are accepted as targets.

Run: python -m bench.load http://127.0.0.1:3000/predict '{"rows": [{"x": 1}]}' [seconds]
"""

from __future__ import annotations

import http.client
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

WRK = "/usr/bin/wrk"
LOOPBACK = {"127.0.0.1", "localhost"}
MARK = "NBDEPLOY_LOAD"

LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[%BODY%]==]

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%MARK% {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_us": %d, "p99_us": %d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass
class LoadResult:
    """What one load run measured."""

    tool: str
    seconds: float
    requests: int
    errors: int
    rps: float  # successful responses per second
    p50_ms: float
    p99_ms: float

    def as_dict(self) -> dict:
        return asdict(self)


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname not in LOOPBACK:
        raise ValueError(f"load only targets http://127.0.0.1 (got {url!r})")


def run_load(
    url: str, body: dict | str, *, seconds: float = 10.0, clients: int = 16, tool: str | None = None
) -> LoadResult:
    """POST ``body`` to ``url`` from ``clients`` concurrent keep-alive connections for ``seconds``.

    ``tool`` forces "wrk" or "python"; by default wrk is used when installed."""
    _check_url(url)
    text = body if isinstance(body, str) else json.dumps(body)
    if tool is None:
        tool = "wrk" if Path(WRK).exists() else "python"
    if tool == "wrk":
        return _wrk(url, text, seconds, clients)
    return _threads(url, text, seconds, clients)


def _wrk(url: str, body: str, seconds: float, clients: int) -> LoadResult:
    if "]==]" in body:
        raise ValueError("body cannot be embedded in the wrk Lua script")
    folder = Path(tempfile.mkdtemp(prefix="bench-wrk-"))
    try:
        script = folder / "post.lua"
        script.write_text(LUA.replace("%BODY%", body).replace("%MARK%", MARK))
        # one wrk thread drives 16 connections easily and leaves the other core to the server
        proc = subprocess.run(
            [WRK, "-t", "1", "-c", str(clients), "-d", f"{max(1, round(seconds))}s",
             "--timeout", "10s", "-s", str(script), url],
            capture_output=True, text=True, timeout=seconds + 60,
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    data = json.loads(line[len(MARK):])
    errors = data["connect"] + data["read"] + data["write"] + data["status"] + data["timeout"]
    took = data["duration_us"] / 1e6
    ok = max(0, data["requests"] - data["status"])
    return LoadResult(
        tool="wrk", seconds=took, requests=data["requests"], errors=errors, rps=ok / took,
        p50_ms=data["p50_us"] / 1000, p99_ms=data["p99_us"] / 1000,
    )


def _threads(url: str, body: str, seconds: float, clients: int) -> LoadResult:
    parts = urlsplit(url)
    path = parts.path or "/"
    payload = body.encode()
    headers = {"Content-Type": "application/json"}
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    start_gate = threading.Barrier(clients + 1)
    deadline = [0.0]

    def client(i: int) -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=10)
        start_gate.wait()
        while time.perf_counter() < deadline[0]:
            t0 = time.perf_counter()
            try:
                conn.request("POST", path, body=payload, headers=headers)
                resp = conn.getresponse()
                resp.read()
                if resp.status >= 400:
                    errors[i] += 1
                else:
                    latencies[i].append(time.perf_counter() - t0)
            except (OSError, http.client.HTTPException):
                errors[i] += 1
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=10)
        conn.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    started = time.perf_counter()
    deadline[0] = started + seconds
    start_gate.wait()
    for t in threads:
        t.join()
    took = time.perf_counter() - started
    flat = sorted(x for per in latencies for x in per)
    n_err = sum(errors)

    def pct(q: float) -> float:
        return flat[min(len(flat) - 1, int(q * len(flat)))] * 1000 if flat else float("nan")

    return LoadResult(
        tool="python-threads", seconds=took, requests=len(flat) + n_err, errors=n_err,
        rps=len(flat) / took, p50_ms=statistics.median(flat) * 1000 if flat else float("nan"),
        p99_ms=pct(0.99),
    )


def main() -> None:
    url, body = sys.argv[1], sys.argv[2]
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 10.0
    print(json.dumps(run_load(url, body, seconds=seconds).as_dict()))


if __name__ == "__main__":
    main()
