"""Drift: shifted samples are flagged, samples from the same distribution are not."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from nbdeploy.monitor.drift import drift_report, psi


def sample(n: int, seed: int, *, shift: float = 0.0, cats=(0.5, 0.3, 0.2)) -> pd.DataFrame:
    """Two numeric features, a categorical one, a boolean and a small-integer one."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "x": rng.normal(shift, 1.0, n),
        "y": rng.normal(5.0, 2.0, n),
        "city": rng.choice(["a", "b", "c"], size=n, p=list(cats)),
        "flag": rng.random(n) < 0.3,
        "rooms": rng.integers(1, 5, n),
    })


REFERENCE = sample(3000, seed=0)


def test_same_distribution_is_not_drift() -> None:
    report = drift_report(REFERENCE, sample(1000, seed=1))
    assert report.verdict == "no drift"
    assert report.drifted == []
    kinds = {f.name: (f.kind, f.test) for f in report.features}
    assert kinds == {"x": ("numeric", "ks"), "y": ("numeric", "ks"),
                     "city": ("categorical", "chi2"), "flag": ("categorical", "chi2"),
                     "rooms": ("numeric", "ks")}
    assert all(f.psi < 0.05 for f in report.features)


def test_mean_shift_and_category_change_are_drift() -> None:
    current = sample(1000, seed=1, shift=1.0, cats=(0.2, 0.3, 0.5))
    report = drift_report(REFERENCE, current)
    assert report.verdict == "drift"
    assert sorted(report.drifted) == ["city", "x"]
    by_name = {f.name: f for f in report.features}
    assert by_name["x"].psi > 0.5 and by_name["x"].p_value < 1e-10
    assert by_name["x"].statistic == pytest.approx(0.38, abs=0.05)  # KS for a 1-sd shift
    assert by_name["city"].psi > 0.2 and by_name["city"].p_value < 1e-10
    assert "PSI" in by_name["x"].reason and "ks p=" in by_name["x"].reason
    assert by_name["y"].verdict == "no drift"


def test_unseen_category_and_missing_values_are_drift() -> None:
    current = sample(1000, seed=1)
    current.loc[:299, "city"] = "z"  # a category the model never saw
    current.loc[:499, "y"] = np.nan  # half the values missing
    report = drift_report(REFERENCE, current)
    assert sorted(report.drifted) == ["city", "y"]
    by_name = {f.name: f for f in report.features}
    assert by_name["city"].psi > 1.0
    assert by_name["y"].psi > 1.0  # the missing-value bin carries it
    assert by_name["y"].n_current == 500


def test_small_integer_feature_shift() -> None:
    current = sample(1000, seed=1)
    current["rooms"] = np.where(current["rooms"] == 1, 6, current["rooms"])  # 1 -> unseen 6
    report = drift_report(REFERENCE, current)
    assert report.drifted == ["rooms"]


def test_listed_categorical_numeric_column() -> None:
    current = sample(1000, seed=1)
    report = drift_report(REFERENCE, current, categorical=["rooms"])
    rooms = next(f for f in report.features if f.name == "rooms")
    assert (rooms.kind, rooms.test, rooms.drifted) == ("categorical", "chi2", False)


def test_too_few_rows_is_insufficient_data() -> None:
    shifted = sample(10, seed=1, shift=3.0)
    report = drift_report(REFERENCE, shifted, min_rows=30)
    assert report.verdict == "insufficient data"
    assert report.drifted == []
    assert {f.verdict for f in report.features} == {"insufficient data"}
    assert drift_report(REFERENCE, sample(40, seed=1, shift=3.0)).verdict == "drift"
    empty = drift_report(REFERENCE, REFERENCE.iloc[:0])
    assert empty.verdict == "insufficient data" and empty.features[0].p_value is None


def test_psi_value() -> None:
    # (0.25-0.5)ln(0.5) + (0.75-0.5)ln(1.5)
    assert psi(np.array([0.5, 0.5]), np.array([0.25, 0.75])) == pytest.approx(0.274653, abs=1e-6)
    assert psi(np.array([0.5, 0.5]), np.array([0.5, 0.5])) == 0.0


def test_outputs_dict_frame_html_and_missing_columns() -> None:
    current = sample(1000, seed=1, shift=1.0).drop(columns=["rooms"])
    report = drift_report(REFERENCE, current)
    assert report.missing == ["rooms"]
    data = json.loads(json.dumps(report.to_dict()))
    assert data["verdict"] == "drift" and data["drifted"] == ["x"]
    assert data["settings"]["psi_threshold"] == 0.2
    frame = report.to_frame()
    assert frame["name"].tolist()[0] == "x" and len(frame) == 4
    html = report._repr_html_()
    assert "#c62828" in html and "<table>" in html and "1 of 4 features drifted" in html


def test_thresholds_change_the_verdict() -> None:
    current = sample(1000, seed=1, shift=0.15)
    strict = drift_report(REFERENCE, current)
    assert strict.drifted == ["x"]  # KS notices a small shift on 1000 rows
    x = next(f for f in strict.features if f.name == "x")
    assert x.psi < 0.2 and x.p_value < 0.01
    lenient = drift_report(REFERENCE, current, ks_alpha=0.0)  # PSI alone
    assert lenient.verdict == "no drift"
    with pytest.raises(KeyError, match="not in the reference"):
        drift_report(REFERENCE, current, columns=["nope"])
    assert math.isclose(sum(f.n_reference for f in strict.features), 5 * 3000)
