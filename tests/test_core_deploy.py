"""Each framework deployed, served by a real `bentoml serve`, and queried over HTTP."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

import nbdeploy.api as api
from nbdeploy.serve import process
from tests import models

pytestmark = pytest.mark.slow


@pytest.fixture
def served():
    """Deployments made by a test; their servers are stopped afterwards."""
    made: list = []
    yield made
    for dep in made:
        for v in dep.row and api.Registry().versions(dep.name):
            process.stop_pid(v.get("pid"), grace=3)


def _check(dep, model, X, predict=None):
    got = np.asarray(dep.predict(X.head(25)), dtype=float)
    want = np.asarray((predict or model.predict)(X.head(25)), dtype=float)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)


def test_sklearn_classifier_and_proba(served):
    from sklearn.ensemble import RandomForestClassifier

    X, y = models.iris()
    m = RandomForestClassifier(n_estimators=15, random_state=0).fit(X, y)
    dep = api.deploy(m, "iris-rf", X)
    served.append(dep)
    assert dep.status() == "serving" and dep.version == 1
    _check(dep, m, X)
    proba = dep.predict_proba(X.head(5))
    np.testing.assert_allclose([[p[str(c)] for c in m.classes_] for p in proba],
                               m.predict_proba(X.head(5)))
    meta = httpx.get(f"{dep.url}/metadata").json()
    assert meta["name"] == "iris-rf" and meta["version"] == 1
    assert meta["pins"]["scikit-learn"] and meta["schema"]["columns"][0]["name"] == "sepal length (cm)"
    for route in ("readyz", "livez", "metrics"):
        assert httpx.get(f"{dep.url}/{route}").status_code == 200


def test_pipeline_with_column_transformer_on_mixed_dtypes(served):
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    X, y = models.mixed()
    X = X.assign(score=X["score"].astype("float64"))
    pre = ColumnTransformer([("cat", OneHotEncoder(handle_unknown="ignore"), ["city", "plan"])],
                            remainder="passthrough")
    m = Pipeline([("pre", pre), ("gb", HistGradientBoostingRegressor(max_iter=30))]).fit(X, y)
    dep = api.deploy(m, "mixed-pipe", X)
    served.append(dep)
    _check(dep, m, X)
    schema = {c["name"]: c for c in dep.row["schema"]["columns"]}
    assert schema["city"]["categories"] == ["lyon", "nice", "paris"]
    assert schema["score"]["nullable"] is True and schema["income"]["nullable"] is False


def test_xgboost_sklearn_api_and_booster(served):
    import xgboost as xgb

    X, y = models.cancer()
    clf = xgb.XGBClassifier(n_estimators=10, max_depth=3).fit(X, y)
    dep = api.deploy(clf, "xgb-clf", X)
    served.append(dep)
    _check(dep, clf, X)
    booster = xgb.train({"max_depth": 3, "objective": "reg:squarederror"},
                        xgb.DMatrix(X, label=y), num_boost_round=10)
    dep2 = api.deploy(booster, "xgb-booster", X)
    served.append(dep2)
    _check(dep2, booster, X, predict=lambda d: booster.predict(xgb.DMatrix(d)))


def test_lightgbm_sklearn_api_and_booster(served):
    import lightgbm as lgb

    X, y = models.diabetes()
    reg = lgb.LGBMRegressor(n_estimators=20, verbose=-1).fit(X, y)
    dep = api.deploy(reg, "lgbm-reg", X)
    served.append(dep)
    _check(dep, reg, X)
    booster = lgb.train({"objective": "regression", "verbose": -1}, lgb.Dataset(X, y), 10)
    dep2 = api.deploy(booster, "lgbm-booster", X)
    served.append(dep2)
    _check(dep2, booster, X)


def test_notebook_defined_class_and_plain_function(served):
    """Classes and functions defined in __main__ are captured by value."""
    import types

    main = types.ModuleType("__main__")
    code = (
        "class Doubler:\n"
        "    def predict(self, X):\n"
        "        return (X['a'] * 2 + X['b']).to_numpy()\n"
        "def scorer(X):\n"
        "    return (X['a'] - X['b']).to_numpy()\n"
    )
    exec(compile(code, "<notebook>", "exec"), main.__dict__)
    import pandas as pd

    X = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [0.5, 0.25, 0.0]})
    dep = api.deploy(main.Doubler(), "doubler", X)
    served.append(dep)
    assert dep.predict(X) == [2.5, 4.25, 6.0]
    dep2 = api.deploy(main.scorer, "scorer", X)
    served.append(dep2)
    assert dep2.predict(X) == [0.5, 1.75, 3.0]


def test_numpy_sample_is_served_with_generated_column_names(served):
    from sklearn.linear_model import Ridge

    X, y = models.diabetes()
    arr = X.to_numpy()
    m = Ridge().fit(arr, y)
    dep = api.deploy(m, "ridge-array", arr)
    served.append(dep)
    rows = [{f"x{i}": float(v) for i, v in enumerate(r)} for r in arr[:5]]
    np.testing.assert_allclose(dep.predict(rows), m.predict(arr[:5]))
