"""Fuzzing the generated service with schemathesis: at least 500 cases, zero failures wanted.

Setup: a gradient-boosting pipeline on int, float, category, nullable-string and nullable-float
columns (tests/helpers/fault_deploy.py ``mixed_classifier``), deployed and served by
`bentoml serve` on 127.0.0.1. schemathesis reads the service's own OpenAPI document
(``/docs.json``) and runs its coverage and fuzzing phases, positive and negative data, on every
POST operation it lists: /predict, /predict_proba, /explain, and the Open Inference Protocol's
/v2/models/{model}/infer (the bento's guard adds the V2 routes to that document). Checks: no
5xx, status codes, content types, headers and bodies as declared, schema-violating requests
refused, schema-valid ones accepted (not for V2: see ``run_schemathesis``). Hypothesis
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
    v2: bool = False,
) -> dict[str, Any]:
    """Run ``schemathesis run`` against ``url``/docs.json and return its JSON
    report plus ``output`` (the console text: each failure with a curl line to reproduce it) and
    ``codes`` ({failure code: count}).

    ``v2=False`` fuzzes BentoML's own POST operations with every check; ``v2=True`` the Open
    Inference Protocol routes (/v2/...), without ``positive_data_acceptance``: a V2 request is
    valid only when its tensors agree with each other (equal lengths, shape x width), which JSON
    Schema cannot say, so most schema-valid bodies are rightly refused with a 400."""
    if not url.startswith(("http://127.0.0.1:", "http://localhost:")):
        raise ValueError(f"fuzzing only targets 127.0.0.1 (got {url!r})")
    workdir.mkdir(parents=True, exist_ok=True)
    report = workdir / "schemathesis.json"
    checks = [c for c in CHECKS if not (v2 and c == "positive_data_acceptance")]
    cmd = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{url}/docs.json",
        *(["--include-path-regex", "^/v2/"] if v2 else
          ["--include-method", "POST", "--exclude-path-regex", "^/v2/"]),
        "--checks", ",".join(checks), "--max-examples", str(max_examples),
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


def fuzz_all(url: str, *, max_examples: int, workdir: Path, seed: int | None = None) -> dict[str, Any]:
    """Both runs of :func:`run_schemathesis` (BentoML's operations, then V2), merged."""
    parts = [run_schemathesis(url, max_examples=max_examples, workdir=workdir / name, seed=seed, v2=v2)
             for name, v2 in (("bentoml", False), ("v2", True))]
    merged: dict[str, Any] = {
        "complete": all(p.get("complete") for p in parts),
        "operations": {"tested": sum(p["operations"]["tested"] for p in parts)},
        "valid_rates": {k: v for p in parts for k, v in p.get("valid_rates", {}).items()},
        "test_cases": {k: sum(p["test_cases"][k] for p in parts)
                       for k in ("generated", "with_failures", "errored")},
        "errors": [e for p in parts for e in p.get("errors", [])],
        "output": "\n".join(p["output"] for p in parts),
        "running_time": sum(p.get("running_time", 0.0) for p in parts),
        "codes": {},
    }
    for p in parts:
        for code, n in p["codes"].items():
            merged["codes"][code] = merged["codes"].get(code, 0) + n
    return merged


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
            result = fuzz_all(str(dep.url), max_examples=EXAMPLES, seed=runs,
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
        {"benchmark": "schemathesis on /predict, /predict_proba, /explain and V2 /infer (coverage + "
                      "fuzzing, positive + negative)",
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
