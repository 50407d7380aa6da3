"""monitoring.py on a deployment that is not served, with hand-written prediction logs:
the Monitor tab's report, KPIs, drift, live quality, A/B comparison and alerts."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from nbdeploy import api, monitoring
from nbdeploy.registry import Registry
from tests import models
from tests.helpers import predlogs

NAME = "mon"
PNG = b"\x89PNG"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``mon`` v1 (iris, built, never served) in a home of its own."""
    home = tmp_path_factory.mktemp("monitoring-home") / "nbdeploy"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NBDEPLOY_HOME", str(home))
        mp.setenv("NBDEPLOY_USER", "tester")
        X, y = models.iris()
        api.deploy(LogisticRegression(max_iter=500).fit(X, y), NAME, X, serve=False)
    yield home


@pytest.fixture
def iris(home: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[pd.DataFrame, pd.Series]:
    """That deployment with an empty prediction log and no alert rules."""
    monkeypatch.setenv("NBDEPLOY_HOME", str(home))
    predlogs.reset(NAME)
    Registry().update_deployment(NAME, settings={})
    return models.iris()


def test_report_on_a_single_record_shows_dashes_not_a_crash(iris) -> None:
    X, _ = iris
    predlogs.write(NAME, X.head(1), latency_ms=7.5)
    k = monitoring.kpis(NAME, None)
    assert k[1]["requests"] == 1 and k[1]["rate"] is None and k[1]["p50_ms"] == 7.5

    out = monitoring.report(NAME)
    html = out["html"]
    assert "<td>v1</td><td>1</td><td>—</td><td>0.0%</td><td>7.5</td><td>7.5</td>" in html
    assert "<b>Drift</b>: insufficient data" in html
    assert "no feedback joined to predictions yet" in html
    assert out["png"].startswith(PNG)  # the reference vs the one row
    assert out["accuracy_png"] is None and "<b>Alerts</b>" not in html


def test_report_on_an_empty_log(iris) -> None:
    out = monitoring.report(NAME)
    assert "no traffic logged yet" in out["html"] and out["png"] is None
    assert monitoring.kpis(NAME) == {}


def test_many_unshifted_records_with_feedback(iris) -> None:
    X, y = iris
    truth = y.tolist()
    answers = truth[:120] + [(t + 1) % 3 for t in truth[120:]]  # 120 of 150 right: 80 %
    ids = predlogs.write(NAME, X, outputs=answers, step=2.0)
    predlogs.feedback(NAME, ids, truth)

    k = monitoring.kpis(NAME, None)[1]
    assert k["requests"] == 150 and k["errors"] == 0
    assert k["rate"] == pytest.approx(150 / (149 * 2.0))
    assert k["p50_ms"] == pytest.approx(16.5) and k["p99_ms"] == pytest.approx(21.0)

    rep = monitoring.drift(NAME, window=None)
    assert rep.verdict == "no drift" and rep.drifted == [] and rep.n_current == 150

    quality = monitoring.live(NAME)
    assert quality["versions"][1]["n"] == 150
    assert quality["versions"][1]["accuracy"] == pytest.approx(0.8)
    assert sum(p["n"] for p in quality["versions"][1]["series"]) == 150

    out = monitoring.report(NAME)
    html = out["html"]
    assert "<td>v1</td><td>150</td><td>0.50/s</td><td>0.0%</td>" in html
    assert "<b>Drift</b>: no drift" in html
    assert "<td>v1</td><td>150</td><td>120</td><td>80.0%</td>" in html
    assert out["accuracy_png"].startswith(PNG) and out["png"].startswith(PNG)
    embedded = base64.b64encode(out["accuracy_png"]).decode()
    assert f"data:image/png;base64,{embedded}" in html
    assert "<b>Alerts</b>" not in html


def test_shifted_records_drift_and_fire_alerts(iris) -> None:
    X, y = iris
    shifted = X.assign(**{"petal length (cm)": X["petal length (cm)"] + 3.0})
    ids = predlogs.write(NAME, shifted, outputs=[0] * 150)
    predlogs.feedback(NAME, ids, y.tolist())  # only the 50 setosa rows are right
    saved = monitoring.set_alerts(NAME, ["drift", "accuracy<0.9", "p99_ms>500"])
    assert saved == ["drift", "accuracy<0.9", "p99_ms>500"]

    rep = monitoring.drift(NAME, window=None)
    assert rep.verdict == "drift" and rep.drifted == ["petal length (cm)"]
    fired = {a.rule.kind: a for a in monitoring.alerts(NAME)}
    assert set(fired) == {"drift", "accuracy_below"}
    assert fired["accuracy_below"].value == pytest.approx(50 / 150)
    assert fired["accuracy_below"].severity == "critical"

    html = monitoring.report(NAME)["html"]
    assert "<b>Drift</b>: drift in petal length (cm)" in html
    assert "<td>v1</td><td>150</td><td>50</td><td>33.3%</td>" in html
    assert "<b>Alerts</b>" in html
    assert "input drift in 1 feature(s): petal length (cm)" in html
    assert "v1 live accuracy 0.333 &lt; 0.9 over 150 labelled rows" in html


def test_two_versions_live_quality_and_ab_comparison(iris) -> None:
    X, y = iris
    truth = y.tolist()
    good = predlogs.write(NAME, X, version=1, outputs=truth, prefix="a")
    bad = predlogs.write(NAME, X, version=2, prefix="b",
                         outputs=truth[:90] + [(t + 1) % 3 for t in truth[90:]])
    predlogs.feedback(NAME, good + bad, truth + truth)

    quality = monitoring.live(NAME)
    assert {v: q["accuracy"] for v, q in quality["versions"].items()} == {1: 1.0, 2: 0.6}
    result = monitoring.compare(NAME, 1, 2)
    assert (result["metric"], result["n_a"], result["n_b"]) == ("accuracy", 150, 150)
    assert result["difference"] == pytest.approx(-0.4)
    assert result["significant"] and result["winner"] == 1

    html = monitoring.report(NAME)["html"]
    assert "<td>v1</td><td>150</td><td>150</td><td>100.0%</td>" in html
    assert "<td>v2</td><td>150</td><td>90</td><td>60.0%</td>" in html


def test_bad_window_and_bucket_are_clear_errors(iris) -> None:
    with pytest.raises(ValueError, match="cannot read the window 'soon'"):
        monitoring.kpis(NAME, "soon")
    with pytest.raises(ValueError, match="bucket must be a positive duration"):
        monitoring.live(NAME, bucket="0m")
    with pytest.raises(ValueError, match="alpha must be between 0 and 1"):
        monitoring.compare(NAME, 1, 2, alpha=2)
