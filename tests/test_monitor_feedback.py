"""Feedback joined to predictions: exact live metrics, A/B comparison, unknown ids."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from nbdeploy.monitor.feedback import FeedbackError, FeedbackStore, compare_versions, live_metrics
from nbdeploy.monitor.predlog import PredictionLog

T0 = 1_700_000_000.0  # an arbitrary moment (not a bucket boundary)


def log_prediction(log: PredictionLog, rid: str, version: int, outputs: list, *, ts: float,
                   shadow: bool = False, status: int = 200) -> None:
    """Log one answered request with one input row per output."""
    log.append({"request_id": rid, "ts": ts, "version": version, "shadow": shadow,
                "inputs": [{"x": float(i)} for i in range(len(outputs))], "outputs": outputs,
                "latency_ms": 2.0, "status": status, "error": None})


@pytest.fixture
def stores(tmp_path: Path) -> tuple[PredictionLog, FeedbackStore]:
    return PredictionLog(tmp_path / "pred"), FeedbackStore(tmp_path / "fb")


def test_classification_accuracy_is_exact_per_version_and_bucket(stores) -> None:
    log, fb = stores
    start = math.floor(T0 / 3600) * 3600
    # v1: 10 requests, 7 right; v2: 10 requests, 9 right. Half of each in the next hour.
    for version, right in ((1, 7), (2, 9)):
        for i in range(10):
            rid = f"v{version}-{i}"
            ts = start + (10 if i < 5 else 3600 + 10)
            log_prediction(log, rid, version, ["cat"], ts=ts)
            fb.add(rid, "cat" if i < right else "dog", predlog=log)
    live = live_metrics(log, fb, task="classification", bucket=3600)
    assert live["versions"][1]["n"] == 10
    assert live["versions"][1]["accuracy"] == pytest.approx(0.7)
    assert live["versions"][2]["accuracy"] == pytest.approx(0.9)
    assert live["unmatched"] == 0 and live["feedback"] == 20
    series = live["versions"][1]["series"]
    assert [p["t"] for p in series] == [start, start + 3600]
    assert [p["accuracy"] for p in series] == [1.0, 0.4]  # rows 0-4 right, then 2 of 5
    assert [p["n"] for p in series] == [5, 5]


def test_rows_shadow_and_output_shapes(stores) -> None:
    log, fb = stores
    log_prediction(log, "r1", 1, [0, 1, {"label": 1}], ts=T0)
    log_prediction(log, "r1", 2, [0, 0, [1]], ts=T0, shadow=True)  # shadow answer, same id
    log_prediction(log, "r2", 1, [[0.2, 0.8]], ts=T0)  # probabilities: cannot be scored
    log_prediction(log, "r3", 1, [1], ts=T0, status=500)  # a failed answer is not scored
    fb.add("r1", 1, row=1, predlog=log)
    fb.add("r1", "1", row=2, predlog=log)  # text and number compare as the same label
    fb.add("r2", 1, predlog=log)
    fb.add("r3", 1, predlog=log)
    live = live_metrics(log, fb, task="classification")
    assert live["versions"][1] == {"n": 2, "correct": 2, "accuracy": 1.0,
                                   "series": live["versions"][1]["series"]}
    assert live["versions"][2]["n"] == 2 and live["versions"][2]["accuracy"] == 0.5
    assert live["unscorable"] == 1


def test_regression_metrics_are_exact(stores) -> None:
    log, fb = stores
    preds, truths = [1.0, 2.0, 3.0, 4.0], [1.5, 2.0, 2.0, 6.0]
    for i, (p, t) in enumerate(zip(preds, truths, strict=True)):
        log_prediction(log, f"r{i}", 3, [{"prediction": p}], ts=T0 + i)
        fb.add(f"r{i}", t, predlog=log)
    quality = live_metrics(log, fb, task="regression")["versions"][3]
    # errors (prediction - truth): -0.5, 0, 1, -2
    assert quality["n"] == 4
    assert quality["mae"] == pytest.approx(0.875)
    assert quality["rmse"] == pytest.approx(math.sqrt(5.25 / 4))
    assert quality["bias"] == pytest.approx(-0.375)


def test_unknown_request_or_row_is_reported(stores) -> None:
    log, fb = stores
    log_prediction(log, "known", 1, [1, 0], ts=T0)
    with pytest.raises(FeedbackError, match="nope") as err:
        fb.add_many([{"request_id": "known", "truth": 1}, {"request_id": "nope", "truth": 0}],
                    predlog=log)
    assert err.value.request_ids == ["nope"]
    assert fb.read() == []  # nothing written when part of a batch is unknown
    with pytest.raises(FeedbackError, match="has 2 row"):
        fb.add("known", 1, row=2, predlog=log)
    fb.add("ghost", 1)  # without a log to check against it is stored, then reported
    fb.add("known", 1, predlog=log)
    live = live_metrics(log, fb, task="classification")
    assert live["unmatched"] == 1 and live["unmatched_ids"] == ["ghost"]
    assert live["versions"][1]["n"] == 1
    with pytest.raises(ValueError, match="task"):
        live_metrics(log, fb, task="ranking")


def test_latest_feedback_wins_and_window_filters(stores) -> None:
    log, fb = stores
    log_prediction(log, "old", 1, [1], ts=T0 - 7200)
    log_prediction(log, "new", 1, [1], ts=T0)
    fb.add("old", 1, predlog=log)
    fb.add("new", 0, predlog=log)
    fb.add("new", 1, predlog=log)  # a correction
    assert fb.truths() == {("old", 0): 1, ("new", 0): 1}
    live = live_metrics(log, fb, task="classification", window=3600, now=T0 + 1)
    assert live["versions"][1]["n"] == 1 and live["versions"][1]["accuracy"] == 1.0
    assert live["unmatched_ids"] == ["old"]  # outside the window


def test_compare_versions_classification_matches_chi_square(stores) -> None:
    log, fb = stores
    rng = np.random.default_rng(3)
    correct = {1: rng.random(400) < 0.6, 2: rng.random(400) < 0.75}
    for version, hits in correct.items():
        fb.add_many([{"request_id": f"{version}-{i}", "truth": 1 if hit else 0}
                     for i, hit in enumerate(hits)])
        for i in range(len(hits)):
            log_prediction(log, f"{version}-{i}", version, [1], ts=T0 + i)
    result = compare_versions(log, fb, task="classification")
    acc1, acc2 = correct[1].mean(), correct[2].mean()
    assert (result["a"], result["b"]) == (1, 2)
    assert result["difference"] == pytest.approx(acc2 - acc1)
    table = [[correct[v].sum(), (~correct[v]).sum()] for v in (1, 2)]
    # the two-proportion z-test is the uncorrected chi-square test on the 2x2 table
    expected_p = stats.chi2_contingency(table, correction=False)[1]
    assert result["p_value"] == pytest.approx(expected_p, rel=1e-9)
    assert result["significant"] and result["winner"] == 2
    assert result["ci"][0] < acc2 - acc1 < result["ci"][1] and result["ci"][0] > 0


def test_compare_versions_regression_and_errors(stores) -> None:
    log, fb = stores
    for version, offset in ((1, 2.0), (2, 0.5)):
        for i in range(30):
            rid = f"{version}-{i}"
            error = offset * (1 + (i % 3) / 10) * (1 if i % 2 else -1)  # |error| = offset * 1.1
            log_prediction(log, rid, version, [float(i) + error], ts=T0)     # on average
            fb.add(rid, float(i))
    result = compare_versions(log, fb, task="regression", a=1, b=2)
    assert result["value_a"] == pytest.approx(2.2) and result["value_b"] == pytest.approx(0.55)
    assert result["difference"] == pytest.approx(-1.65) and result["winner"] == 2
    assert result["ci"][0] < -1.65 < result["ci"][1] < 0
    same = compare_versions(log, fb, task="regression", a=1, b=1)
    assert same["difference"] == 0 and same["p_value"] == 1.0 and same["winner"] is None
    assert result["metric"] == "mae" and result["test"] == "welch t"
    log_prediction(log, "3-0", 3, [1.0], ts=T0)
    fb.add("3-0", 1.0)
    with pytest.raises(FeedbackError, match="pass a= and b="):
        compare_versions(log, fb, task="regression")
    with pytest.raises(FeedbackError, match="at least 2"):
        compare_versions(log, fb, task="regression", a=1, b=3)
