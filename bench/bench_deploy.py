"""Deploy speed and serving throughput: nbdeploy against doing the same by hand with BentoML 1.4.

Model: GradientBoostingClassifier on scikit-learn's breast-cancer data (30 float columns).
Every contender runs in this process's run, interleaved, on the same machine state.

Rows (ratio = nbdeploy ÷ baseline):
- deploy to first answer: ``nbdeploy.api.deploy`` until a POST /predict answers, against
  ``bentoml.sklearn.save_model`` + a hand-written service.py + ``bentoml build`` (CLI) +
  ``bentoml serve`` until /readyz and a POST /predict answers. Twice: BentoML's default
  build (package locking on: resolves against PyPI with uv) and locking off
  (``python: lock_packages: false`` in bentofile.yaml). Median of REPEATS runs.
- redeploy of an unchanged model: the second ``deploy()`` call (target < 0.5 s).
- 1-row requests, 16 concurrent keep-alive clients (wrk when installed): the generated
  service against a default BentoML service (plain @bentoml.service / @bentoml.api, no
  batching, default logging) and a bare Starlette app on uvicorn (1 worker, no access log).

Run: python -m bench.bench_deploy
"""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.load import LoadResult, run_load
from bench.workdir import restored_env

REPEATS = 3
LOAD_SECONDS = 5.0  # per round
LOAD_ROUNDS = 2  # interleaved rounds per contender: ~10 s of load each
CLIENTS = 16
READY_TIMEOUT = 120.0

HAND_SERVICE = '''"""A minimal hand-written BentoML 1.4 service (defaults: no batching, access log on)."""
import bentoml
import pandas as pd


@bentoml.service
class HandService:
    model_ref = bentoml.models.BentoModel("{model_tag}")

    def __init__(self) -> None:
        self.model = bentoml.sklearn.load_model(self.model_ref)

    @bentoml.api
    def predict(self, rows: list[dict[str, float]]) -> list[int]:
        X = pd.DataFrame(rows, columns=self.model.feature_names_in_)
        return self.model.predict(X).tolist()
'''

BENTOFILE = """service: "service:HandService"
include:
  - "service.py"
python:
  packages:
{packages}
"""

STARLETTE_APP = '''"""A bare Starlette app around the same model (uvicorn, 1 worker, access log off)."""
import pickle
from pathlib import Path

import pandas as pd
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

MODEL = pickle.loads((Path(__file__).parent / "model.pkl").read_bytes())
COLUMNS = list(MODEL.feature_names_in_)


async def predict(request):
    body = await request.json()
    X = pd.DataFrame(body["rows"], columns=COLUMNS)
    return JSONResponse(MODEL.predict(X).tolist())


async def readyz(request):
    return PlainTextResponse("ok")


app = Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/readyz", readyz)])
'''


@contextlib.contextmanager
def _isolated_home() -> Iterator[Path]:
    """NBDEPLOY_HOME / BENTOML_HOME in a temp folder (or the one bench.run_all already set)."""
    if os.environ.get("NBDEPLOY_BENCH_HOME"):
        yield Path(os.environ["NBDEPLOY_BENCH_HOME"])
        return
    if "bentoml" in sys.modules:
        raise RuntimeError("bench_deploy must set BENTOML_HOME before bentoml is imported; "
                           "run it with python -m bench.bench_deploy or bench.run_all")
    home = Path(tempfile.mkdtemp(prefix="bench-deploy-"))
    try:
        with restored_env():
            os.environ.update(NBDEPLOY_HOME=str(home), BENTOML_HOME=str(home / "bentoml"),
                              BENTOML_DO_NOT_TRACK="true")
            yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _model() -> tuple[Any, Any]:
    """The benchmark model and its training frame."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import GradientBoostingClassifier

    data = load_breast_cancer(as_frame=True)
    model = GradientBoostingClassifier(random_state=0).fit(data.data, data.target)
    return model, data.data


def _wait_answers(base: str, body: dict, pid: int, timeout: float = READY_TIMEOUT) -> None:
    """Poll /readyz every 0.1 s until 200, then POST /predict until it answers 200."""
    import httpx

    from nbdeploy.serve import process

    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if not process.alive(pid):
            raise RuntimeError(f"server {pid} exited while starting")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/readyz", timeout=2.0).status_code == 200:
                break
        time.sleep(0.1)
    else:
        raise RuntimeError(f"{base} not ready after {timeout:.0f} s")
    _answer(base, body)


def _answer(base: str, body: dict) -> Any:
    """One POST /predict; the parsed answer (raises on a non-200)."""
    import httpx

    resp = httpx.post(f"{base}/predict", json=body, timeout=30.0)
    resp.raise_for_status()
    return resp.json()


def _popen(cmd: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    """Start a server in its own session (so its whole process group can be stopped)."""
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, cwd=str(cwd), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def _stop(pid: int | None) -> None:
    from nbdeploy.serve import process

    process.stop_pid(pid, grace=5.0)


def _bentoml() -> str:
    return str(Path(sys.executable).with_name("bentoml"))


# --- contenders ------------------------------------------------------------------------


def _nbdeploy_deploy(model: Any, X: Any, name: str, body: dict) -> tuple[float, float, dict]:
    """(seconds to first answer, seconds of the unchanged redeploy, phase seconds).

    Phases come from deploy()'s progress stages; the server is stopped again."""
    import nbdeploy.api as api

    seen: dict[str, float] = {}

    def progress(stage: str, message: str) -> None:
        seen.setdefault(stage, time.perf_counter())

    t0 = time.perf_counter()
    dep = api.deploy(model, name, X, progress=progress)
    _answer(dep.url, body)
    done = time.perf_counter()
    t_build, t_start = seen.get("building", t0), seen.get("starting", done)
    phases = {"capture": t_build - t0, "build": t_start - t_build, "serve": done - t_start}
    t1 = time.perf_counter()
    again = api.deploy(model, name, X)
    redeploy = time.perf_counter() - t1
    if again.version != dep.version:
        raise RuntimeError("redeploy of an unchanged model built a new version")
    api.stop(name, dep.version, router=True)  # the router too: nothing outlives the run
    return done - t0, redeploy, phases


def _by_hand(model: Any, work: Path, name: str, body: dict, *, lock: bool) -> tuple[float, str, dict]:
    """save_model + service.py + `bentoml build` + `bentoml serve` to first answer.

    Returns (seconds, bento tag, phase seconds); the server is stopped again."""
    import bentoml
    import pandas
    import sklearn

    from nbdeploy.serve import process

    folder = work / name
    folder.mkdir(parents=True)
    t0 = time.perf_counter()
    tag = str(bentoml.sklearn.save_model(name, model).tag)
    (folder / "service.py").write_text(HAND_SERVICE.format(model_tag=tag))
    packages = "\n".join(f"    - {p}" for p in (f"scikit-learn=={sklearn.__version__}",
                                                   f"pandas=={pandas.__version__}"))
    bentofile = BENTOFILE.format(packages=packages)
    if not lock:
        bentofile += "  lock_packages: false\n"
    (folder / "bentofile.yaml").write_text(bentofile)
    t_build = time.perf_counter()
    built = subprocess.run([_bentoml(), "build", "-o", "tag", "."], cwd=folder,
                           capture_output=True, text=True)
    if built.returncode != 0:
        raise RuntimeError(f"bentoml build failed:\n{built.stdout[-2000:]}\n{built.stderr[-2000:]}")
    bento_tag = built.stdout.strip().splitlines()[-1].replace("__tag__:", "").strip()
    t_serve = time.perf_counter()
    port = process.free_port()
    proc = _popen([_bentoml(), "serve", bento_tag, "--host", "127.0.0.1", "--port", str(port)],
                  folder, folder / "serve.log")
    try:
        _wait_answers(f"http://127.0.0.1:{port}", body, proc.pid)
        done = time.perf_counter()
    finally:
        _stop(proc.pid)
    phases = {"save": t_build - t0, "build": t_serve - t_build, "serve": done - t_serve}
    return done - t0, bento_tag, phases


def _start_starlette(model: Any, work: Path, body: dict) -> tuple[str, int]:
    from nbdeploy.serve import process

    folder = work / "starlette"
    folder.mkdir()
    (folder / "model.pkl").write_bytes(pickle.dumps(model))
    (folder / "app.py").write_text(STARLETTE_APP)
    port = process.free_port()
    proc = _popen([sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port",
                   str(port), "--workers", "1", "--no-access-log", "--log-level", "warning"],
                  folder, folder / "serve.log")
    base = f"http://127.0.0.1:{port}"
    _wait_answers(base, body, proc.pid)
    return base, proc.pid


def _start_bento(bento_tag: str, work: Path, body: dict) -> tuple[str, int]:
    from nbdeploy.serve import process

    port = process.free_port()
    proc = _popen([_bentoml(), "serve", bento_tag, "--host", "127.0.0.1", "--port", str(port)],
                  work, work / "hand-default-serve.log")
    base = f"http://127.0.0.1:{port}"
    _wait_answers(base, body, proc.pid)
    return base, proc.pid


def _merge(results: list[LoadResult]) -> LoadResult:
    """Rounds of one contender as one figure: total rate; median of the rounds' percentiles."""
    seconds = sum(r.seconds for r in results)
    ok = sum(r.rps * r.seconds for r in results)
    return LoadResult(
        tool=results[0].tool, seconds=seconds, requests=sum(r.requests for r in results),
        errors=sum(r.errors for r in results), rps=ok / seconds,
        p50_ms=statistics.median(r.p50_ms for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
    )


def _throughput(targets: dict[str, str], body: dict, expected: Any) -> dict[str, LoadResult]:
    """Interleaved rounds of 1-row load against every target (after a 1 s warm-up each)."""
    for base in targets.values():
        got = _answer(base, body)
        if got != expected:
            raise RuntimeError(f"{base}/predict answered {got!r}, expected {expected!r}")
        run_load(f"{base}/predict", body, seconds=1, clients=CLIENTS)
    rounds: dict[str, list[LoadResult]] = {k: [] for k in targets}
    order = list(targets)
    for i in range(LOAD_ROUNDS):
        for key in order if i % 2 == 0 else reversed(order):
            rounds[key].append(run_load(f"{targets[key]}/predict", body, seconds=LOAD_SECONDS,
                                        clients=CLIENTS))
    return {k: _merge(v) for k, v in rounds.items()}


# --- the benchmark ---------------------------------------------------------------------


def _med(values: list[float]) -> float:
    return statistics.median(values)


def _load_text(r: LoadResult) -> str:
    errs = f", {r.errors} errors" if r.errors else ""
    return f"{r.rps:.0f} req/s (p50 {r.p50_ms:.1f} ms, p99 {r.p99_ms:.1f} ms{errs})"


def _row(benchmark: str, figure: str, baseline: str, ratio: float, target: str, met: bool,
         note: str = "") -> dict:
    row = {"benchmark": benchmark, "figure": figure, "baseline": baseline, "ratio": round(ratio, 2),
           "target": target, "met": bool(met)}
    if note:
        row["note"] = note
    return row


def run() -> list[dict]:
    """Measure every contender in this run and return the benchmark rows."""
    with _isolated_home() as home:
        # imported before timing: a by-hand user imports bentoml in the notebook too
        import bentoml.sklearn  # noqa: F401

        import nbdeploy.api  # noqa: F401

        work = Path(tempfile.mkdtemp(prefix="work-", dir=home))
        model, X = _model()
        body = {"rows": [{k: float(v) for k, v in X.iloc[0].items()}]}
        expected = model.predict(X.iloc[:1]).tolist()

        ours, redeploys, hand_off, hand_on = [], [], [], []
        phases_off, phases_on, phases_ours = [], [], []
        lock_error = ""
        bento_off = ""
        for i in range(REPEATS):  # the order rotates each round so drift hits all alike
            for who in ("nbdeploy", "off", "lock")[i % 3:] + ("nbdeploy", "off", "lock")[:i % 3]:
                if who == "nbdeploy":
                    first, again, ph = _nbdeploy_deploy(model, X, f"bench-gb-{i}", body)
                    ours.append(first)
                    phases_ours.append(ph)
                    redeploys.append(again)
                elif who == "off":
                    secs, bento_off, ph = _by_hand(model, work, f"hand-off-{i}", body, lock=False)
                    hand_off.append(secs)
                    phases_off.append(ph)
                elif not lock_error:
                    try:
                        secs, _, ph = _by_hand(model, work, f"hand-lock-{i}", body, lock=True)
                        hand_on.append(secs)
                        phases_on.append(ph)
                    except Exception as exc:  # no network: report it, keep the other rows
                        lock_error = f"{type(exc).__name__}: {str(exc)[:300]}"

        import nbdeploy.api as api

        dep = api.start(f"bench-gb-{REPEATS - 1}")
        pids: list[int] = []
        try:
            hand_base, pid = _start_bento(bento_off, work, body)
            pids.append(pid)
            bare_base, pid = _start_starlette(model, work, body)
            pids.append(pid)
            loads = _throughput(
                {"nbdeploy": dep.url, "bentoml": hand_base, "starlette": bare_base}, body, expected
            )
        finally:
            api.stop(dep.name, dep.version, router=True)
            for pid in pids:
                _stop(pid)

    def phase_note(phases: list[dict]) -> str:
        return ", ".join(f"{k} {_med([p[k] for p in phases]):.2f} s" for k in phases[0])

    t_ours = _med(ours)
    ours_text = f"{t_ours:.2f} s (nbdeploy deploy(), median of {REPEATS})"
    rows = []
    if hand_on:
        t_on = _med(hand_on)
        rows.append(_row("deploy to first answer vs BentoML by hand, default build (locking on)",
                         ours_text, f"{t_on:.2f} s (save_model + bentoml build + serve)",
                         t_ours / t_on, "<= 0.8x", t_ours / t_on <= 0.8,
                         f"by hand: {phase_note(phases_on)}; runs {[round(x, 2) for x in hand_on]}"))
    else:
        rows.append({"benchmark": "deploy to first answer vs BentoML by hand, default build (locking on)",
                     "figure": ours_text, "baseline": "not measured", "ratio": None,
                     "target": "<= 0.8x", "met": False, "error": lock_error})
    t_off = _med(hand_off)
    rows.append(_row("deploy to first answer vs BentoML by hand, locking off",
                     ours_text, f"{t_off:.2f} s (save_model + bentoml build + serve)",
                     t_ours / t_off, "<= 1.0x", t_ours / t_off <= 1.0,
                     f"by hand: {phase_note(phases_off)}; runs {[round(x, 2) for x in hand_off]}; "
                     f"nbdeploy: {phase_note(phases_ours)}; runs {[round(x, 2) for x in ours]}"))
    t_re = _med(redeploys)
    rows.append(_row("redeploy of an unchanged model (second deploy() call)",
                     f"{t_re:.3f} s (median of {REPEATS})", f"{t_ours:.2f} s (first deploy)",
                     t_re / t_ours, "< 0.5 s", t_re < 0.5,
                     f"runs {[round(x, 3) for x in redeploys]}"))
    gen, default, bare = loads["nbdeploy"], loads["bentoml"], loads["starlette"]
    clean = gen.errors == 0
    info = f"{CLIENTS} clients, {LOAD_ROUNDS}x{LOAD_SECONDS:.0f} s interleaved, load by {gen.tool}"
    rows.append(_row("1-row throughput vs default BentoML service", _load_text(gen),
                     _load_text(default) + " (@bentoml.api, no batching)", gen.rps / default.rps,
                     ">= 2.0x", clean and gen.rps / default.rps >= 2.0, info))
    rows.append(_row("1-row throughput vs bare Starlette", _load_text(gen),
                     _load_text(bare) + " (uvicorn, 1 worker)", gen.rps / bare.rps,
                     ">= 1.0x", clean and gen.rps / bare.rps >= 1.0, info))
    return rows


def main() -> None:
    from bench.run_all import markdown_table

    rows = run()
    print(markdown_table(rows))
    for row in rows:
        if row.get("note") or row.get("error"):
            print(f"- {row['benchmark']}: {row.get('error') or row['note']}")


if __name__ == "__main__":
    main()
