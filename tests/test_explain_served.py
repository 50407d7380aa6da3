"""Served /explain equals the notebook's explanation and is additive, per model family."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

import nbdeploy
import nbdeploy.api as api
from nbdeploy.deployment import _records
from tests import models

pytestmark = pytest.mark.slow


def _families():
    import lightgbm as lgb
    import xgboost as xgb
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    Xi, yi = models.iris()
    Xc, yc = models.cancer()
    Xd, yd = models.diabetes()
    Xm, ym = models.mixed()
    Xm = Xm.assign(score=Xm["score"].astype("float64").fillna(0.0))
    pre = ColumnTransformer([("oh", OneHotEncoder(handle_unknown="ignore"), ["city", "plan"]),
                             ("num", StandardScaler(), ["age", "income", "score"])])
    return {
        "rf-multiclass": (RandomForestClassifier(n_estimators=20, random_state=0).fit(Xi, yi), Xi),
        "xgb-binary": (xgb.XGBClassifier(n_estimators=15, max_depth=3).fit(Xc, yc), Xc),
        "sklearn-gb-binary": (GradientBoostingClassifier(n_estimators=20, random_state=0).fit(Xc, yc),
                              Xc),
        "knn-model-agnostic": (KNeighborsClassifier().fit(Xc, yc), Xc),
        "lgbm-regressor": (lgb.LGBMRegressor(n_estimators=20, verbose=-1).fit(Xd, yd), Xd),
        "logistic": (LogisticRegression(max_iter=1000).fit(Xc, yc), Xc),
        "pipeline-onehot": (Pipeline([("pre", pre), ("rf", RandomForestClassifier(
            n_estimators=15, random_state=0))]).fit(Xm, ym), Xm),
    }


EXPECTED_EXPLAINER = {"knn-model-agnostic": "kernel", "logistic": "linear"}


@pytest.mark.parametrize("family", list(_families()))
def test_served_explain_matches_notebook_and_adds_up(family):
    model, X = _families()[family]
    dep = api.deploy(model, f"explain-{family}", X)
    rows = X.head(6)
    records = _records(rows)
    resp = httpx.post(f"{dep.url}/explain", json={"rows": records}, timeout=120)
    assert resp.status_code == 200, resp.text
    served = resp.json()
    assert served["columns"] == list(X.columns)  # contributions on the user's original columns
    assert served["explainer"] == EXPECTED_EXPLAINER.get(family, "tree")
    assert float(resp.headers["server-timing"].split("dur=")[1]) > 0
    local = nbdeploy.explain(model, rows, background=api.load_reference(dep.name, 1), progress=False)
    np.testing.assert_allclose(served["contributions"], local.values.to_numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(served["base_values"], local.base_values, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(served["outputs"], local.outputs, rtol=1e-5, atol=1e-6)
    assert served["class"] == local.classes and served["output_space"] == local.output_space
    total = np.asarray(served["base_values"]) + np.asarray(served["contributions"]).sum(axis=1)
    np.testing.assert_allclose(total, served["outputs"], rtol=1e-4, atol=1e-4)
    if family == "rf-multiclass":
        assert served["class"] == model.predict(rows).tolist()
    bad = httpx.post(f"{dep.url}/explain", json={"rows": [{"nope": 1}]})
    assert bad.status_code == 400 and "nope" in bad.text


def test_served_explain_of_one_chosen_class():
    model, X = _families()["rf-multiclass"]
    dep = api.deploy(model, "explain-class", X)
    rows = X.iloc[::30]
    body = {"rows": _records(rows)}
    served = httpx.post(f"{dep.url}/explain", json={**body, "class_index": 2}, timeout=120)
    assert served.status_code == 200, served.text
    served = served.json()
    assert served["class"] == [2] * len(rows)
    np.testing.assert_allclose(served["outputs"], model.predict_proba(rows)[:, 2], rtol=1e-9)
    local = nbdeploy.explain(model, rows, background=api.load_reference(dep.name, 1),
                             class_index=2, progress=False)
    np.testing.assert_allclose(served["contributions"], local.values.to_numpy(), rtol=1e-5, atol=1e-6)
    client = dep.explain(rows, class_index=2)  # the Python client sends the same field
    assert client["class"] == [2] * len(rows)
    np.testing.assert_allclose(client["contributions"], served["contributions"], rtol=1e-12)
    for wrong in (3, -1, "2", True, None, 1.5):
        resp = httpx.post(f"{dep.url}/explain", json={**body, "class_index": wrong}, timeout=60)
        assert resp.status_code == 400 and "class_index" in resp.text, (wrong, resp.text)


def test_served_model_agnostic_explain_over_its_time_budget_is_a_503(monkeypatch):
    from sklearn.neighbors import KNeighborsClassifier

    Xc, yc = models.cancer()
    model = KNeighborsClassifier().fit(Xc, yc)
    monkeypatch.setenv("NBDEPLOY_EXPLAIN_MAX_SECONDS", "1e-9")  # the server inherits it
    dep = api.deploy(model, "explain-budget", Xc)
    resp = httpx.post(f"{dep.url}/explain", json={"rows": _records(Xc.head(5))}, timeout=120)
    assert resp.status_code == 503, resp.text
    message = resp.json()["error"]
    assert "time budget" in message and "5 row(s)" in message and "max_seconds" in message
    one = httpx.post(f"{dep.url}/explain", json={"rows": _records(Xc.head(1))}, timeout=120)
    assert one.status_code == 200 and one.json()["explainer"] == "kernel", one.text


NUMPY_MODEL = '''
def score(X):
    """Needs a numpy array (X[:, j]) and refuses b below -100, as a model may."""
    if (X[:, 1] < -100).any():
        raise ValueError("b below -100 is out of range")
    return 2.0 * X[:, 0] - 3.0 * X[:, 1] + 0.5
'''


def test_served_explain_gives_the_model_what_predict_gives_and_the_same_errors():
    import types

    import pandas as pd

    main = types.ModuleType("__main__")  # captured by value, as a notebook's function is
    exec(compile(NUMPY_MODEL, "<notebook>", "exec"), main.__dict__)
    sample = np.random.default_rng(0).normal(size=(60, 2))
    dep = api.deploy(main.score, "explain-numpy", sample)  # fitted on an array: /predict sends one
    rows = pd.DataFrame(sample[:4], columns=["x0", "x1"])
    resp = httpx.post(f"{dep.url}/explain", json={"rows": _records(rows)}, timeout=120)
    assert resp.status_code == 200, resp.text
    served = resp.json()
    assert served["explainer"] == "kernel" and served["columns"] == ["x0", "x1"]
    np.testing.assert_allclose(served["outputs"], main.score(sample[:4]), rtol=1e-9)
    local = nbdeploy.explain("explain-numpy", rows, progress=False)
    np.testing.assert_allclose(served["contributions"], local.values.to_numpy(), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(served["base_values"], local.base_values, rtol=1e-9)
    # a model error is the same answer on both routes: 422 with the model's message
    bad = {"rows": [{"x0": 1.0, "x1": -1000.0}]}
    answers = [httpx.post(f"{dep.url}/{route}", json=bad, timeout=120) for route in ("predict", "explain")]
    assert [a.status_code for a in answers] == [422, 422], [a.text for a in answers]
    assert all("b below -100 is out of range" in a.text for a in answers), answers[1].text
