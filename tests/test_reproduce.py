"""Reproduce: re-run a version's training notebook in a real kernel and compare the models."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import cloudpickle
import nbformat
import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression

import nbdeploy.api as api
from nbdeploy.errors import NbdeployError
from nbdeploy.intercept import REPRODUCE_ENV, RETRAIN_ENV, Captured, intercept, run_training
from nbdeploy.registry import Registry
from nbdeploy.reproduce import ReproduceWarning, compare_predictions, reproduce
from nbdeploy.retrain import retrain
from tests import models

NOTEBOOKS = Path(__file__).resolve().parent / "notebooks"
EXAMPLE = Path(__file__).resolve().parent.parent / "example_notebooks" / "train_iris.ipynb"


def _train(notebook: Path, out: Path, **parameters) -> None:
    """Run a training notebook the way JupyterLab would (it knows its own path)."""
    run = run_training(notebook, output_path=out / f"trained-{notebook.name}", parameters=parameters,
                       env={"NBDEPLOY_NOTEBOOK": str(notebook)})
    assert run.ok, run.reason


# -- fast: the kernel-side hook and the comparison --------------------------------------------
def test_deploy_in_reproduce_mode_captures_the_model_and_registers_nothing(tmp_path, monkeypatch):
    X, y = models.iris()
    model = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    monkeypatch.setenv(REPRODUCE_ENV, str(tmp_path / "cap"))
    got = api.deploy(model, "captured", X, validate=["never-run.ipynb"])
    assert isinstance(got, Captured) and got.version is None and got.status() == "captured"
    assert Registry().deployments() == []
    rebuilt = cloudpickle.loads((tmp_path / "cap" / "captured.pkl").read_bytes())
    assert (rebuilt.predict(X) == model.predict(X)).all()
    assert (got.predict(X.head(5)) == model.predict(X.head(5))).all()
    assert cloudpickle.loads((tmp_path / "cap" / "captured.sample.pkl").read_bytes()).equals(X)


def test_retrain_mode_adds_the_recorded_gate_only_to_its_own_deployment(tmp_path, monkeypatch):
    report = tmp_path / "deploys.jsonl"
    recorded = {"name": "iris", "validate": [str(tmp_path / "acc.ipynb")], "require": {"accuracy": ">=0.9"},
                "require_better": ["accuracy"], "params": {"rows": 50}, "report": str(report)}
    monkeypatch.setenv(RETRAIN_ENV, json.dumps(recorded))
    own = {"validate": [tmp_path / "acc.ipynb", "extra.ipynb"],
           "require": {"accuracy": ">=0.5", "f1": ">=0.8"}, "require_better": None,
           "params": {"rows": 10, "seed": 1}}
    result, merged = intercept(object(), "iris", None, own)
    assert result is None
    assert merged["validate"] == [tmp_path / "acc.ipynb", "extra.ipynb"]  # same file once
    assert merged["require"] == {"accuracy": ">=0.9", "f1": ">=0.8"}  # the recorded gate wins
    assert merged["require_better"] == ["accuracy"]
    assert merged["params"] == {"rows": 50, "seed": 1}
    assert intercept(object(), "other", None, own) == (None, own)
    notes = [json.loads(line) for line in report.read_text().splitlines()]
    assert [(n["name"], n["gated"]) for n in notes] == [("iris", True), ("other", False)]


def test_compare_predictions_verdicts():
    X, y = models.diabetes()
    a = LinearRegression().fit(X, y)
    b = LinearRegression().fit(X, y)
    assert compare_predictions(a, b, X)["verdict"] == "exact"
    b.intercept_ += 1e-6
    near = compare_predictions(a, b, X, tolerance=1e-3)
    assert near["status"] == "within-tolerance"
    assert near["verdict"].startswith("within tolerance (max abs diff")
    b.intercept_ += 5.0
    far = compare_predictions(a, b, X, tolerance=1e-3)
    assert far["status"] == "differs" and far["rows_differing"] == len(X)
    assert far["verdict"] == f"differs (max abs diff {far['max_abs_diff']:.3g}, {len(X)} of {len(X)} rows)"
    assert far["max_abs_diff"] == pytest.approx(5.0, abs=1e-5)

    Xi, yi = models.iris()
    c1 = RandomForestClassifier(n_estimators=5, random_state=0).fit(Xi, yi)
    c2 = RandomForestClassifier(n_estimators=5, random_state=1).fit(Xi, yi)
    labels = compare_predictions(c1, c2, Xi, classification=True)
    assert labels["status"] == "differs" and 0 < labels["rows_differing"] <= len(Xi)


def test_reproduce_refuses_versions_without_a_notebook_on_disk(tmp_path, monkeypatch):
    for var in ("NBDEPLOY_NOTEBOOK", "JPY_SESSION_NAME"):
        monkeypatch.delenv(var, raising=False)
    X, y = models.iris()
    api.deploy(RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y), "nowhere", X, serve=False)
    with pytest.raises(NbdeployError, match=r"deployed outside a notebook.*notebook="):
        reproduce("nowhere:1")
    gone = tmp_path / "gone.ipynb"
    api.deploy(RandomForestClassifier(n_estimators=4, random_state=0).fit(X, y), "lost", X, serve=False,
               notebook=str(gone))
    with pytest.raises(NbdeployError, match=f"missing: {re.escape(str(gone))} not found. Restore it"):
        reproduce("lost")
    assert "reproduce" not in Registry().version("lost", 1)["lineage"]


# -- slow: real kernels ------------------------------------------------------------------------
@pytest.mark.slow
def test_deterministic_notebook_reproduces_exactly_then_warns_and_fails_when_edited(tmp_path):
    notebook = tmp_path / "train.ipynb"
    shutil.copy(NOTEBOOKS / "train_forest.ipynb", notebook)
    _train(notebook, tmp_path)
    result = reproduce("forest:1")
    assert result.status == "exact" and result.verdict == "exact" and result.ok
    assert result.rows == 150 and result.max_abs_diff == 0.0 and not result.notebook_changed
    assert Path(result.executed_notebook).is_file()
    stored = Registry().version("forest", 1)["lineage"]
    assert stored["reproduce"]["verdict"] == "exact" and stored["notebook"] == str(notebook)
    events = [e["detail"]["verdict"] for e in Registry().events("forest") if e["action"] == "reproduce"]
    assert events == ["exact"]

    nb = nbformat.read(notebook, as_version=4)
    nb.cells.append(nbformat.v4.new_markdown_cell("An edit after deploying."))
    nbformat.write(nb, notebook)
    with pytest.warns(ReproduceWarning, match="changed since forest v1 was deployed"):
        edited = reproduce("forest:1")
    assert edited.status == "exact" and edited.notebook_changed and edited.warnings

    nb.cells.insert(3, nbformat.v4.new_code_cell("raise ValueError('training data went missing')"))
    nbformat.write(nb, notebook)
    with pytest.warns(ReproduceWarning):
        broken = reproduce("forest:1")
    assert broken.status == "failed" and not broken.ok
    assert broken.verdict.startswith("failed (the notebook failed before deploying: ValueError: "
                                      "training data went missing")
    assert Registry().version("forest", 1)["lineage"]["reproduce"]["status"] == "failed"


@pytest.mark.slow
def test_unseeded_notebook_differs(tmp_path):
    _train(NOTEBOOKS / "train_noisy.ipynb", tmp_path)
    result = reproduce("noisy")
    assert result.status == "differs", result.verdict
    match = re.fullmatch(r"differs \(max abs diff ([0-9.e-]+), (\d+) of 150 rows\)", result.verdict)
    assert match and float(match.group(1)) > 0 and int(match.group(2)) == result.rows_differing > 0
    assert Registry().version("noisy", 1)["lineage"]["reproduce"]["status"] == "differs"


@pytest.mark.slow
def test_example_training_notebook_reproduces_and_retrains(tmp_path):
    run = run_training(EXAMPLE, output_path=tmp_path / "train_iris.ipynb")  # standalone, no env
    assert run.ok, run.reason
    dep = api.get("iris-train")
    assert dep.version == 1 and dep.status() == "serving"
    assert Registry().version("iris-train", 1)["lineage"]["notebook"] == str(EXAMPLE)
    assert reproduce("iris-train:1").verdict == "exact"

    out = retrain("iris-train", params={"n_estimators": 30}, allow_ungated=True)  # no gate recorded
    assert (out["new_version"], out["status"], out["ungated"]) == (2, "serving", True), out
    assert Registry().version("iris-train", 1)["status"] == "ready"
    model, _ = api.load_model("iris-train:2")
    assert model.n_estimators == 30
    assert Registry().version("iris-train", 2)["lineage"]["parameters"] == {"n_estimators": 30}
    # reproduce re-runs v2 with the parameters its lineage recorded, so it is exact again
    again = reproduce("iris-train:2")
    assert again.verdict == "exact", again.verdict
    assert np.array_equal(api.get("iris-train").predict(models.iris()[0].head(3)),
                          model.predict(models.iris()[0].head(3)))


@pytest.mark.slow
def test_cli_reproduce_exit_codes(tmp_path):
    """`nbdeploy reproduce`: 0 when the rebuilt model predicts the same, 1 when it differs
    (beyond --tolerance) and 1 with one clear line when there is no notebook to run."""
    from click.testing import CliRunner

    from nbdeploy.cli import cli

    notebook = tmp_path / "train.ipynb"
    shutil.copy(NOTEBOOKS / "train_forest.ipynb", notebook)
    _train(notebook, tmp_path)
    _train(NOTEBOOKS / "train_noisy.ipynb", tmp_path)
    runner = CliRunner()
    same = runner.invoke(cli, ["reproduce", "forest:1"])
    assert same.exit_code == 0, same.output
    assert "exact" in same.output
    differs = runner.invoke(cli, ["reproduce", "noisy"])
    assert differs.exit_code == 1, differs.output
    assert "differs (max abs diff" in differs.output
    notebook.unlink()
    missing = runner.invoke(cli, ["reproduce", "forest:1"])
    assert missing.exit_code == 1
    assert missing.output.startswith("error:") and "not found" in missing.output
    assert "Traceback" not in missing.output
    unknown = runner.invoke(cli, ["reproduce", "nosuchmodel"])
    assert unknown.exit_code == 1 and "no deployment named 'nosuchmodel'" in unknown.output
