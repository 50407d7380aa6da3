"""schemathesis against a live generated service, from its own OpenAPI document (/docs.json).

One short run (about 150 cases: schemathesis' coverage phase plus ``EXAMPLES`` fuzzed cases per
operation, fixed seed) is shared by the tests below; bench/bench_fuzz.py runs 500+ cases. Each
failing check is printed with the payload and a curl line that reproduces it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from bench.bench_fuzz import SERVER_ERRORS, failures_text, fuzz_all

from tests.helpers.fault_deploy import mixed_classifier

pytestmark = pytest.mark.slow

EXAMPLES = 12
SEED = 20251125
OPERATIONS = {"POST /predict", "POST /predict_proba", "POST /explain", "POST /v2/models/{model}/infer",
              "GET /v2/models/{model}", "GET /v2/health/live", "GET /v2/health/ready"}


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Deploy the mixed-dtype classifier, run schemathesis once against it, return the report."""
    from nbdeploy import api
    from nbdeploy.registry import Registry
    from nbdeploy.serve import process

    work = tmp_path_factory.mktemp("fuzz")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NBDEPLOY_HOME", str(work / "nbdeploy"))
        mp.setenv("BENTOML_DO_NOT_TRACK", "true")
        model, X = mixed_classifier()
        dep = api.deploy(model, "fuzz", X)
        pid, url, log = dep.row["pid"], str(dep.url), process.log_path("fuzz", dep.version)
        router = Registry().deployment("fuzz").get("router_pid")
    try:
        result = fuzz_all(url, max_examples=EXAMPLES, seed=SEED, workdir=work / "run")
        result["server_log"] = log.read_text(errors="replace") if log.exists() else ""
        yield result
    finally:
        process.stop_pid(router, grace=3.0)
        process.stop_pid(pid, grace=5.0)


def _report(result: dict[str, Any], codes: set[str] | None = None) -> str:
    found = {c: n for c, n in result["codes"].items() if codes is None or c in codes}
    return f"failures {found}\n{failures_text(result)}"


def test_the_run_covered_every_operation_with_enough_cases(
    fuzzed: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    with capsys.disabled():
        print(f"\nschemathesis: {fuzzed['test_cases']['generated']} cases, "
              f"{fuzzed['test_cases']['with_failures']} failing, codes {fuzzed['codes']}, "
              f"{fuzzed['running_time']:.0f} s")
    assert fuzzed["complete"] and fuzzed["operations"]["tested"] == len(OPERATIONS)
    assert set(fuzzed["valid_rates"]) == OPERATIONS
    assert fuzzed["test_cases"]["generated"] >= 100
    assert fuzzed["errors"] == [] and fuzzed["test_cases"]["errored"] == 0, fuzzed["errors"]


def test_no_server_errors(fuzzed: dict[str, Any]) -> None:
    assert not SERVER_ERRORS & set(fuzzed["codes"]), _report(fuzzed, SERVER_ERRORS)
    assert "OverflowError" not in fuzzed["server_log"]


def test_answers_conform_to_the_openapi_document(fuzzed: dict[str, Any]) -> None:
    conformance = {c for c in fuzzed["codes"] if c.startswith("ST1")} - SERVER_ERRORS  # ST103-ST115
    assert not conformance, _report(fuzzed, conformance)


def test_schema_is_enforced_both_ways(fuzzed: dict[str, Any]) -> None:
    """Schema-violating requests are refused, schema-valid ones accepted."""
    assert not {"ST201", "ST202"} & set(fuzzed["codes"]), _report(fuzzed, {"ST201", "ST202"})


def test_zero_failures_in_all(fuzzed: dict[str, Any]) -> None:
    assert fuzzed["test_cases"]["with_failures"] == 0 and not fuzzed["codes"], _report(fuzzed)
