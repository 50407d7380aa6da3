"""Retrain: re-run the serving version's training notebook in a real kernel, through its gate."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import nbformat
import pytest
from sklearn.linear_model import LogisticRegression

import nbdeploy.api as api
from nbdeploy.errors import NbdeployError
from nbdeploy.intercept import run_training
from nbdeploy.registry import Registry
from nbdeploy.retrain import gate_options, retrain
from tests import models

NOTEBOOKS = Path(__file__).resolve().parent / "notebooks"
PARAMS = "model_name = None\nmodel_version = None\nmodel_tag = None\nendpoint = None\nrows = 150"
ACCURACY = """
import httpx, nbdeploy
from sklearn.datasets import load_iris
X, y = load_iris(return_X_y=True, as_frame=True)
X, y = X.head(rows), y.head(rows)
pred = httpx.post(f"{endpoint}/predict", json={"rows": X.to_dict(orient="records")}, timeout=60).json()
nbdeploy.record("accuracy", float((pred == y.to_numpy()).mean()))
"""


def _accuracy_notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(PARAMS)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(ACCURACY)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def _train(notebook: Path, out: Path, **parameters) -> None:
    """Run a training notebook the way JupyterLab would (it knows its own path)."""
    run = run_training(notebook, output_path=out / f"trained-{notebook.name}", parameters=parameters,
                       env={"NBDEPLOY_NOTEBOOK": str(notebook)})
    assert run.ok, run.reason


def test_retrain_needs_a_serving_version_from_a_notebook(monkeypatch):
    for var in ("NBDEPLOY_NOTEBOOK", "JPY_SESSION_NAME"):
        monkeypatch.delenv(var, raising=False)
    X, y = models.iris()
    api.deploy(LogisticRegression(max_iter=500).fit(X, y), "adhoc", X, serve=False)
    with pytest.raises(NbdeployError, match="adhoc has no serving version to retrain from"):
        retrain("adhoc", params={"C": 2.0})
    Registry().update_deployment("adhoc", serving_version=1)
    with pytest.raises(NbdeployError, match="deployed outside a notebook"):
        retrain("adhoc", params={"C": 2.0})
    assert [e for e in Registry().events("adhoc") if e["action"] == "retrain"] == []


@pytest.mark.slow
def test_retrain_goes_through_the_serving_versions_gate(tmp_path):
    gate = _accuracy_notebook(tmp_path / "accuracy.ipynb")
    train = NOTEBOOKS / "train_gated.ipynb"
    _train(train, tmp_path, gate_notebook=str(gate))  # v1: the first deploy passes its gate
    reg = Registry()
    assert reg.deployment("retrained")["serving_version"] == 1
    assert gate_options("retrained", require_better=True) == {
        "validate": [str(gate)], "require": {"accuracy": ">=0.9"}, "require_better": ["accuracy"],
        "params": {}}

    # good parameters: the notebook's deploy has no gate of its own; retrain brings v1's
    good = retrain("retrained", params={"C": 0.5})
    assert (good["new_version"], good["status"], good["reason"]) == (2, "serving", None), good
    assert Path(good["executed_notebook"]).is_file()
    runs = reg.validation_runs("retrained", 2)
    assert [(r["role"], r["notebook"], r["status"]) for r in runs] == [("candidate", str(gate), "passed")]
    assert runs[0]["metrics"]["accuracy"] >= 0.9
    lineage = reg.version("retrained", 2)["lineage"]
    assert lineage["parameters"] == {"C": 0.5} and lineage["retrained_from"] == 1
    assert lineage["notebook"] == str(train)
    assert api.load_model("retrained:2")[0].C == 0.5

    # shuffled labels: rejected by the accuracy requirement, v2 keeps serving and answering
    bad = retrain("retrained", params={"shuffle_labels": True})
    assert (bad["new_version"], bad["status"]) == (3, "rejected"), bad
    assert bad["reason"].startswith("accuracy = ") and "required >= 0.9" in bad["reason"]
    assert bad["parameters"] == {"C": 0.5, "shuffle_labels": True}  # v2's recipe plus the change
    assert reg.deployment("retrained")["serving_version"] == 2
    serving = api.get("retrained")
    assert serving.version == 2 and serving.status() == "serving"
    X, _ = models.iris()
    resp = httpx.post(f"{serving.url}/predict", json={"rows": X.head(5).to_dict(orient="records")})
    assert resp.json() == list(api.load_model("retrained:2")[0].predict(X.head(5)))

    # beat the champion: C=0.05 scores 0.94, above the 0.9 requirement but below v2 (0.967)
    weaker = retrain("retrained", params={"C": 0.05, "shuffle_labels": False}, require_better=True)
    assert (weaker["new_version"], weaker["status"]) == (4, "rejected"), weaker
    assert weaker["gate"]["require_better"] == ["accuracy"]
    assert "accuracy: challenger 0.94 is worse than champion 0.966667 (higher is better)" \
        in weaker["reason"]
    validation = reg.version("retrained", 4)["validation"]
    assert validation["metrics"]["accuracy"] == pytest.approx(0.94)  # the absolute gate held
    assert validation["champion_metrics"]["accuracy"] == pytest.approx(145 / 150)
    assert reg.deployment("retrained")["serving_version"] == 2
    serving = api.get("retrained")
    assert serving.version == 2 and serving.status() == "serving"
    assert api.get("retrained:4").status() != "serving"
    resp = httpx.post(f"{serving.url}/predict", json={"rows": X.head(5).to_dict(orient="records")})
    assert resp.json() == list(api.load_model("retrained:2")[0].predict(X.head(5)))

    actions = [(e["action"], e["version"], e["detail"].get("status"), e["detail"].get("ungated"))
               for e in reg.events("retrained") if e["action"] == "retrain"]
    assert actions == [("retrain", 2, "serving", False), ("retrain", 3, "rejected", False),
                       ("retrain", 4, "rejected", False)]


@pytest.mark.slow
def test_retrain_says_when_the_notebook_fails_deploys_nothing_or_nothing_new(tmp_path):
    train = tmp_path / "train.ipynb"
    shutil.copy(NOTEBOOKS / "train_forest.ipynb", train)
    _train(train, tmp_path, serve=True)
    assert Registry().deployment("forest")["serving_version"] == 1

    # v1 had no validation notebooks: no gate to reuse, so no silent unchecked deploy
    with pytest.raises(NbdeployError, match=r"deployed without validation notebooks.*--no-gate"):
        retrain("forest", params={"n_estimators": 30})
    assert [v["version"] for v in Registry().versions("forest")] == [1]
    assert not [e for e in Registry().events("forest") if e["action"] == "retrain"]

    skipped = retrain("forest", params={"deploy": False}, allow_ungated=True)
    assert skipped["ungated"] is True
    assert (skipped["new_version"], skipped["status"]) == (None, "no-deploy")
    assert "ran to the end but never deployed 'forest'" in skipped["reason"]

    broken = retrain("forest", params={"n_estimators": -1}, allow_ungated=True)
    assert (broken["new_version"], broken["status"]) == (None, "notebook-failed")
    assert "failed before deploying: InvalidParameterError" in broken["reason"]
    assert Path(broken["executed_notebook"]).is_file()

    same = retrain("forest", params={}, allow_ungated=True)
    assert (same["new_version"], same["status"]) == (None, "unchanged"), same
    assert [v["version"] for v in Registry().versions("forest")] == [1]
    assert api.get("forest").status() == "serving"
