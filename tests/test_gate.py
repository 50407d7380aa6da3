"""The validation gate with real papermill kernels against real candidate servers."""

from __future__ import annotations

from pathlib import Path

import httpx
import nbformat
import pytest
from sklearn.linear_model import LogisticRegression

import nbdeploy.api as api
from nbdeploy.registry import Registry
from nbdeploy.serve import process
from tests import models

pytestmark = pytest.mark.slow

PARAMS = 'model_name = None\nmodel_version = None\nmodel_tag = None\nendpoint = None\nrows = 150'
CHECK = """
import httpx, nbdeploy
from sklearn.datasets import load_iris
X, y = load_iris(return_X_y=True, as_frame=True)
X, y = X.head(rows), y.head(rows)
pred = httpx.post(f"{endpoint}/predict", json={"rows": X.to_dict(orient="records")}, timeout=60).json()
accuracy = float((pred == y.to_numpy()).mean())
nbdeploy.record("accuracy", accuracy)
nbdeploy.record("version_seen", model_version)
"""


def _notebook(path: Path, body: str) -> Path:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(PARAMS)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.fixture
def notebooks(tmp_path: Path) -> dict[str, Path]:
    return {
        "accuracy": _notebook(tmp_path / "accuracy.ipynb", CHECK),
        "boom": _notebook(tmp_path / "boom.ipynb", "raise AssertionError('predictions look wrong')"),
    }


@pytest.fixture
def cleanup():
    yield
    reg = Registry()
    for dep in reg.deployments():
        for v in reg.versions(dep["name"]):
            process.stop_pid(v.get("pid"), grace=3)


def _answers(dep, X) -> list:
    resp = httpx.post(f"{dep.url}/predict", json={"rows": X.head(3).to_dict(orient="records")})
    assert resp.status_code == 200
    return resp.json()


def test_gate_passes_rejects_and_keeps_previous_version_serving(notebooks, cleanup):
    X, y = models.iris()
    good = LogisticRegression(max_iter=500).fit(X, y)
    v1 = api.deploy(good, "gated", X, validate=[notebooks["accuracy"]], require={"accuracy": ">=0.9"})
    assert v1.version == 1 and v1.status() == "serving"
    runs = Registry().validation_runs("gated", 1)
    assert [r["status"] for r in runs] == ["passed"]
    assert runs[0]["metrics"]["accuracy"] >= 0.9 and runs[0]["metrics"]["version_seen"] == 1
    assert Path(runs[0]["output_path"]).exists()

    # a notebook that raises: rejected with its reason, v1 untouched and answering
    other = LogisticRegression(max_iter=500, C=0.5).fit(X, y)
    v2 = api.deploy(other, "gated", X, validate=[notebooks["boom"]])
    row = Registry().version("gated", 2)
    assert row["status"] == "rejected" and "predictions look wrong" in row["reason"]
    assert Registry().deployment("gated")["serving_version"] == 1
    assert v1.status() == "serving" and _answers(v1, X) == list(good.predict(X.head(3)))
    assert v2.status() == "rejected"

    # a requirement not met: rejected, naming the metric and its value
    api.deploy(LogisticRegression(max_iter=500, C=0.2).fit(X, y), "gated", X,
               validate=[notebooks["accuracy"]], require={"accuracy": ">=1.01"})
    row = Registry().version("gated", 3)
    assert row["status"] == "rejected" and "accuracy" in row["reason"]
    assert Registry().deployment("gated")["serving_version"] == 1


def test_champion_challenger_deltas_and_require_better(notebooks, cleanup):
    X, y = models.iris()
    api.deploy(LogisticRegression(max_iter=500).fit(X, y), "duel", X, validate=[notebooks["accuracy"]])
    weak = LogisticRegression(max_iter=500, C=0.001).fit(X, y)  # a much worse model
    api.deploy(weak, "duel", X, validate=[notebooks["accuracy"]], require_better=["accuracy"])
    row = Registry().version("duel", 2)
    assert row["status"] == "rejected" and "accuracy" in row["reason"]
    deltas = {d["metric"]: d for d in row["validation"]["deltas"]}
    champ = row["validation"]["champion_metrics"]["accuracy"]
    chall = row["validation"]["metrics"]["accuracy"]
    assert chall < champ and deltas["accuracy"]["delta"] == pytest.approx(chall - champ)
    assert {r["role"] for r in Registry().validation_runs("duel", 1)} == {"candidate", "champion"}
    assert Registry().deployment("duel")["serving_version"] == 1
