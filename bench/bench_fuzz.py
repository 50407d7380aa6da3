"""Fuzzing the generated service with schemathesis: at least 500 cases, zero failures wanted.

Setup: a gradient-boosting pipeline on int, float, category, nullable-string and nullable-float
columns (tests/helpers/fault_deploy.py ``mixed_classifier``), deployed and served by
`bentoml serve` on 127.0.0.1. schemathesis reads the service's own OpenAPI document
(``/docs.json``) and runs its coverage and fuzzing phases, positive and negative data, on every
POST operation it lists (/predict, /predict_proba, /explain; the /v2 routes are plain Starlette
routes absent from that document). Checks: no 5xx, status codes, content types, headers and
bodies as declared, schema-violating requests refused, schema-valid ones accepted. Hypothesis
stops fuzzing an operation at its first failure, so runs repeat with seeds 1, 2, ... until at least
``MIN_CASES`` cases ran; failure counts are summed over the runs.

Rows:
- cases that failed a check, out of all cases run (target: 0, with at least 500 cases);
- 5xx answers among them (target: 0);
- cases per second, informational (how long a fuzz run of the service takes on this machine).

Run: python -m bench.bench_fuzz   (``run_schemathesis`` is also what tests/test_fuzz.py uses)
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.workdir import in_workdir

ROOT = Path(__file__).resolve().parent.parent
CHECKS = (
    "not_a_server_error", "status_code_conformance", "content_type_conformance",
    "response_headers_conformance", "response_schema_conformance", "negative_data_rejection",
    "positive_data_acceptance",
)
SERVER_ERRORS = {"ST101", "ST102"}  # a 5xx, a 5xx on an undeclared Content-Type
EXAMPLES = 150  # per operation and phase; the coverage phase adds its own cases
MIN_CASES = 500  # hypothesis stops an operation at its first failure: runs repeat with new seeds
MAX_RUNS = 8
NAME = "bench-fuzz"


def run_schemathesis(
    url: str, *, max_examples: int, workdir: Path, seed: int | None = None, timeout: float = 1800,
) -> dict[str, Any]:
    """Run ``schemathesis run`` against ``url``/docs.json (POST operations only) and return its JSON
    report plus ``output`` (the console text: each failure with a curl line to reproduce it) and
    ``codes`` ({failure code: count})."""
    if not url.startswith(("http://127.0.0.1:", "http://localhost:")):
        raise ValueError(f"fuzzing only targets 127.0.0.1 (got {url!r})")
    workdir.mkdir(parents=True, exist_ok=True)
    report = workdir / "schemathesis.json"
    cmd = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{url}/docs.json",
        "--include-method", "POST", "--checks", ",".join(CHECKS), "--max-examples", str(max_examples),
        "--workers", "1", "--continue-on-failure", "--generation-database", "none", "--no-color",
        "--request-timeout", "120", "--report", "json", "--report-json-path", str(report),
    ]
    if seed is not None:
        cmd += ["--seed", str(seed)]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "NO_COLOR": "1"})
    if not report.exists():
        raise RuntimeError(f"schemathesis wrote no report (exit {proc.returncode}):\n{proc.stdout[-3000:]}"
                           f"\n{proc.stderr[-3000:]}")
    data = json.loads(report.read_text())
    data["output"] = proc.stdout
    data["codes"] = {f["code"]: f["count"] for f in data.get("failures", [])}
    return data


def failures_text(result: dict[str, Any], limit: int = 6000) -> str:
    """The FAILURES section of the console output (payloads and curl lines), for assertion messages."""
    out = result.get("output", "")
    start = out.find("FAILURES")
    text = out[start:] if start >= 0 else out
    return re.sub(r"\n{3,}", "\n\n", text)[:limit]


def _run(work: Path) -> list[dict[str, Any]]:
    os.environ["NBDEPLOY_HOME"] = str(work / "nbdeploy")
    os.environ["BENTOML_HOME"] = str(work / "bentoml")
    os.environ["BENTOML_DO_NOT_TRACK"] = "true"
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.helpers.fault_deploy import mixed_classifier

    from nbdeploy import api

    model, X = mixed_classifier()
    dep = api.deploy(model, NAME, X)
    cases = failed = runs = 0
    codes: dict[str, int] = {}
    note = ""
    try:
        started = time.perf_counter()
        while cases < MIN_CASES and runs < MAX_RUNS:
            runs += 1
            result = run_schemathesis(str(dep.url), max_examples=EXAMPLES, seed=runs,
                                      workdir=work / f"fuzz-{runs}")
            cases += result["test_cases"]["generated"]
            failed += result["test_cases"]["with_failures"]
            for code, n in result["codes"].items():
                codes[code] = codes.get(code, 0) + n
            if result["test_cases"]["with_failures"] and not note:
                note = failures_text(result, 1500)
        seconds = time.perf_counter() - started
    finally:
        api.stop(NAME)  # the server and the deployment's router
    server = sum(n for code, n in codes.items() if code in SERVER_ERRORS)
    kinds = ", ".join(f"{code} x{n}" for code, n in sorted(codes.items())) or "none"
    return [
        {"benchmark": "schemathesis on /predict, /predict_proba, /explain (coverage + fuzzing, "
                      "positive + negative)",
         "figure": f"{failed} failing cases of {cases} in {runs} run(s), seeds 1-{runs} ({kinds})",
         "baseline": "0 failing cases",
         "ratio": round((cases - failed) / cases, 3) if cases else None,
         "target": ">= 500 cases, 1.00 passing", "met": cases >= 500 and failed == 0,
         **({"note": note} if note else {})},
        {"benchmark": "5xx answers during the fuzz runs", "figure": f"{server} unique 5xx failures",
         "baseline": "0", "ratio": None, "target": "0", "met": server == 0},
        {"benchmark": "fuzzing speed (informational)", "figure": f"{cases / seconds:.1f} cases/s",
         "baseline": f"{cases} cases in {seconds:.0f} s", "ratio": None, "target": "informational",
         "met": None},
    ]


def run() -> list[dict[str, Any]]:
    """Deploy, fuzz, and return the benchmark rows."""
    return in_workdir("bench-fuzz-", _run)


def main() -> None:
    for row in run():
        print(json.dumps(row))


if __name__ == "__main__":
    main()
