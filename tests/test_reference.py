"""The reference sample captured at deploy time: capped in size, stored with the version and in
the bento (where the served /explain reads it), and used by ``explain("name")``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from nbdeploy import api
from nbdeploy.capture.schema import reference_sample
from nbdeploy.explanations import explain
from nbdeploy.registry import Registry

pytestmark = pytest.mark.slow

CAP = 300  # reference_sample's documented default: "a few hundred rows"


def _thousand_rows() -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(7)
    X = pd.DataFrame(rng.normal(size=(1000, 4)), columns=["a", "b", "c", "d"])
    X["a"] += np.linspace(-3, 3, 1000)  # row order matters: a sample differs from the whole
    y = (X["a"] + 0.5 * X["b"] - X["c"] > 0).astype(int)
    return X, y


def test_reference_is_capped_stored_in_the_bento_and_used_by_explain():
    assert reference_sample.__kwdefaults__["n"] == CAP
    X, y = _thousand_rows()
    model = LogisticRegression().fit(X, y)
    dep = api.deploy(model, "reference", X, serve=False)

    stored = api.load_reference("reference", dep.version)
    assert list(stored.columns) == list(X.columns) and len(stored) == CAP
    original = set(map(tuple, X.to_numpy()))
    assert all(tuple(r) in original for r in stored.to_numpy())  # real rows of the sample
    assert len(set(map(tuple, stored.to_numpy()))) == CAP  # drawn without replacement

    import bentoml

    bento_dir = Path(bentoml.bentos.get(Registry().version("reference", dep.version)["bento_tag"]).path)
    copies = list(bento_dir.rglob("reference.json"))
    assert len(copies) == 1, copies  # the one the service reads, next to service.py
    assert (copies[0].parent / "service.py").exists()
    in_bento = pd.DataFrame(json.loads(copies[0].read_text()), columns=list(X.columns))
    pd.testing.assert_frame_equal(in_bento, stored, check_exact=True)

    rows = X.iloc[[10, 500, 990]]
    by_name = explain("reference", rows, progress=False)
    with_stored = explain(model, rows, background=stored, progress=False)
    with_all = explain(model, rows, background=X, progress=False)
    # a linear explainer's base value is the model's score at the background's mean
    assert by_name.explainer == "linear"
    np.testing.assert_allclose(by_name.base_values, with_stored.base_values, rtol=1e-12)
    np.testing.assert_allclose(by_name.values, with_stored.values, rtol=1e-12, atol=1e-12)
    assert np.abs(by_name.base_values - with_all.base_values).max() > 1e-3
