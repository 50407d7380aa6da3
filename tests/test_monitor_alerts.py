"""Alert rules: parsing the short forms and firing on KPIs, live quality and drift."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nbdeploy.monitor.alerts import AlertRule, AlertRuleError, evaluate, parse_rules
from nbdeploy.monitor.drift import drift_report


def frame(seed: int, shift: float = 0.0, n: int = 800) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x": rng.normal(shift, 1, n), "z": rng.normal(shift, 1, n),
                         "w": rng.normal(0, 1, n)})


@pytest.mark.parametrize(
    ("text", "kind", "threshold", "version"),
    [
        ("accuracy<0.9", "accuracy_below", 0.9, None),
        (" accuracy < .85 @v2 ", "accuracy_below", 0.85, 2),
        ("error_rate>0.05", "error_rate_above", 0.05, None),
        ("p99_ms>200@3", "latency_p99_above", 200.0, 3),
        ("drift", "drift", 0.0, None),
        ("drift>2", "drift", 2.0, None),
        ("ERROR_RATE>1e-3", "error_rate_above", 0.001, None),
    ],
)
def test_parse_accepted_forms(text: str, kind: str, threshold: float, version: int | None) -> None:
    rule = AlertRule.parse(text)
    assert (rule.kind, rule.threshold, rule.version) == (kind, threshold, version)
    assert AlertRule.parse(str(rule)) == rule


@pytest.mark.parametrize(
    "text", ["accuracy>0.9", "latency>3", "p99_ms<5", "drift<1", "", "error_rate>"]
)
def test_unreadable_rules_list_the_accepted_forms(text: str) -> None:
    with pytest.raises(AlertRuleError, match=r"accepted forms: accuracy<0\.9, error_rate>0\.05"):
        AlertRule.parse(text)


def test_parse_rules_and_unknown_kind() -> None:
    assert [str(r) for r in parse_rules("accuracy<0.9, drift,p99_ms>200@v1")] == [
        "accuracy<0.9", "drift", "p99_ms>200@v1"]
    with pytest.raises(AlertRuleError, match="unknown alert kind"):
        AlertRule("accuracy_above", 0.5)


KPIS = {
    1: {"requests": 100, "error_rate": 0.02, "p99_ms": 150.0},
    2: {"requests": 100, "error_rate": 0.12, "p99_ms": 450.0},
    3: {"requests": 3, "error_rate": 1.0, "p99_ms": 9999.0},  # too few requests to judge
}
LIVE = {"versions": {1: {"n": 50, "accuracy": 0.88}, 2: {"n": 50, "accuracy": 0.75},
                     3: {"n": 2, "accuracy": 0.0}}}


def test_evaluate_kpis_and_accuracy() -> None:
    alerts = evaluate(["accuracy<0.9", "error_rate>0.05", "p99_ms>200"], kpis=KPIS, live=LIVE)
    got = {(str(a.rule), a.version): (a.value, a.severity) for a in alerts}
    assert got == {
        ("accuracy<0.9", 1): (0.88, "warning"),   # error 0.12 < 2 x 0.10
        ("accuracy<0.9", 2): (0.75, "critical"),  # error 0.25 >= 0.20
        ("error_rate>0.05", 2): (0.12, "critical"),
        ("p99_ms>200", 2): (450.0, "critical"),
    }
    msg = next(a.message for a in alerts if a.version == 2 and a.rule.kind == "latency_p99_above")
    assert "450" in msg and "100 requests" in msg
    only_v1 = evaluate("accuracy<0.9@v1", live=LIVE)
    assert [(a.version, a.to_dict()["rule"]) for a in only_v1] == [(1, "accuracy<0.9@v1")]
    assert len(evaluate("error_rate>0.05", kpis=KPIS, min_samples=1)) == 2  # v3 counts now
    assert evaluate(["accuracy<0.9", "drift"]) == []  # no data, no alert


def test_evaluate_drift() -> None:
    reference, shifted, same = frame(0), frame(1, shift=1.0), frame(2)
    report = drift_report(reference, shifted)
    alerts = evaluate("drift", drift=report)
    assert len(alerts) == 1 and alerts[0].value == 2.0 and "x" in alerts[0].message
    assert evaluate("drift>2", drift=report) == []
    per_version = {1: drift_report(reference, same), 2: report.to_dict()}
    assert [a.version for a in evaluate("drift", drift=per_version)] == [2]
