"""Served /explain equals the notebook's explanation and is additive, per model family."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

import nbdeploy
import nbdeploy.api as api
from nbdeploy.deployment import _records
from nbdeploy.registry import Registry
from nbdeploy.serve import process
from tests import models

pytestmark = pytest.mark.slow


def _families():
    import lightgbm as lgb
    import xgboost as xgb
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
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
        "lgbm-regressor": (lgb.LGBMRegressor(n_estimators=20, verbose=-1).fit(Xd, yd), Xd),
        "logistic": (LogisticRegression(max_iter=1000).fit(Xc, yc), Xc),
        "pipeline-onehot": (Pipeline([("pre", pre), ("rf", RandomForestClassifier(
            n_estimators=15, random_state=0))]).fit(Xm, ym), Xm),
    }


@pytest.fixture
def stop_all():
    yield
    reg = Registry()
    for dep in reg.deployments():
        for v in reg.versions(dep["name"]):
            process.stop_pid(v.get("pid"), grace=3)


@pytest.mark.parametrize("family", list(_families()))
def test_served_explain_matches_notebook_and_adds_up(family, stop_all):
    model, X = _families()[family]
    dep = api.deploy(model, f"explain-{family}", X)
    rows = X.head(6)
    records = _records(rows)
    resp = httpx.post(f"{dep.url}/explain", json={"rows": records}, timeout=120)
    assert resp.status_code == 200, resp.text
    served = resp.json()
    assert served["columns"] == list(X.columns)  # contributions on the user's original columns
    local = nbdeploy.explain(model, rows, background=api.load_reference(dep.name, 1), progress=False)
    np.testing.assert_allclose(served["contributions"], local.values.to_numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(served["base_values"], local.base_values, rtol=1e-5, atol=1e-6)
    total = np.asarray(served["base_values"]) + np.asarray(served["contributions"]).sum(axis=1)
    np.testing.assert_allclose(total, served["outputs"], rtol=1e-4, atol=1e-4)
    bad = httpx.post(f"{dep.url}/explain", json={"rows": [{"nope": 1}]})
    assert bad.status_code == 400 and "nope" in bad.text
