"""SHAP explanations: explainer choice, additivity, original columns, classes, plots, notebook."""

from __future__ import annotations

import ast
import importlib.util
import shutil
import struct
import warnings
from pathlib import Path

import lightgbm as lgb
import nbformat
import numpy as np
import pandas as pd
import pytest
import shap
import xgboost as xgb
from nbclient import NotebookClient
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.decomposition import PCA
from sklearn.ensemble import (
    GradientBoostingRegressor,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from nbdeploy.explanations import ExplainTimeout, Explanation, explain
from nbdeploy.package.runtime.explainer import make_explainer

ROOT = Path(__file__).resolve().parent.parent
RUNTIME_FILE = ROOT / "src" / "nbdeploy" / "package" / "runtime" / "explainer.py"


@pytest.fixture(scope="module")
def cancer() -> tuple[pd.DataFrame, pd.Series]:
    return load_breast_cancer(return_X_y=True, as_frame=True)


@pytest.fixture(scope="module")
def diabetes() -> tuple[pd.DataFrame, pd.Series]:
    return load_diabetes(return_X_y=True, as_frame=True)


@pytest.fixture(scope="module")
def iris() -> tuple[pd.DataFrame, pd.Series]:
    return load_iris(return_X_y=True, as_frame=True)


@pytest.fixture(scope="module")
def mixed() -> tuple[pd.DataFrame, pd.Series]:
    """Numbers, a categorical, a string column, a nullable int with a gap, an unused column."""
    rng = np.random.default_rng(0)
    n = 300
    frame = pd.DataFrame({
        "age": rng.normal(40, 10, n),
        "colour": pd.Categorical(rng.choice(["red", "green", "blue"], n)),
        "city": pd.array(rng.choice(["oslo", "lima"], n), dtype="string"),
        "visits": pd.array(rng.integers(0, 5, n), dtype="Int64"),
        "noise": rng.normal(size=n),
    })
    frame.loc[3, "visits"] = pd.NA
    target = (0.1 * frame["age"] + 3.0 * (frame["colour"] == "red")
              + frame["visits"].fillna(0).astype(float) + (frame["city"] == "oslo").astype(float))
    return frame, target.astype(float)


def arrays(result: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (np.array(result["base_values"]), np.array(result["contributions"]),
            np.array(result["outputs"]))


def assert_additive(result: dict, rtol: float = 1e-6) -> None:
    base, contrib, out = arrays(result)
    assert contrib.shape == (len(out), len(result["columns"]))
    np.testing.assert_allclose(base + contrib.sum(axis=1), out, rtol=rtol, atol=rtol)


def test_random_forest_binary_explains_positive_class_probability(cancer):
    X, y = cancer
    model = RandomForestClassifier(n_estimators=20, random_state=0).fit(X, y)
    result = make_explainer(model, X).explain(X.iloc[:25])
    assert (result["explainer"], result["output_space"]) == ("tree", "probability")
    assert result["columns"] == list(X.columns)
    assert result["class"] == [1] * 25
    assert_additive(result)
    np.testing.assert_allclose(result["outputs"], model.predict_proba(X.iloc[:25])[:, 1])
    # the negative class is the mirror image in probability space
    negative = make_explainer(model, X).explain(X.iloc[:25], class_index=0)
    np.testing.assert_allclose(negative["outputs"], model.predict_proba(X.iloc[:25])[:, 0])
    np.testing.assert_allclose(np.array(negative["contributions"]),
                               -np.array(result["contributions"]), atol=1e-12)


def test_gradient_boosting_regressor(diabetes):
    X, y = diabetes
    model = GradientBoostingRegressor(n_estimators=20, random_state=0).fit(X, y)
    result = make_explainer(model, X).explain(X.iloc[:30])
    assert (result["explainer"], result["output_space"], result["class"]) == (
        "tree", "prediction", None)
    assert_additive(result)
    np.testing.assert_allclose(result["outputs"], model.predict(X.iloc[:30]), rtol=1e-9)
    # the base value is the mean training prediction recorded in the trees
    assert abs(result["base_values"][0] - y.mean()) < 0.05 * y.std()


def test_xgboost_classifier_in_log_odds(cancer):
    X, y = cancer
    model = xgb.XGBClassifier(n_estimators=20, max_depth=3).fit(X, y)
    result = make_explainer(model, X).explain(X.iloc[:40])
    assert (result["explainer"], result["output_space"]) == ("tree", "log_odds")
    assert_additive(result, rtol=1e-5)  # xgboost computes in float32
    probability = 1 / (1 + np.exp(-np.array(result["outputs"])))
    np.testing.assert_allclose(probability, model.predict_proba(X.iloc[:40])[:, 1], atol=1e-5)


def test_xgboost_booster_takes_dataframes(diabetes):
    X, y = diabetes
    booster = xgb.train({"max_depth": 3}, xgb.DMatrix(X, label=y), num_boost_round=20)
    result = make_explainer(booster, X).explain(X.iloc[:20])
    assert (result["explainer"], result["output_space"], result["class"]) == (
        "tree", "prediction", None)
    assert_additive(result, rtol=1e-5)
    np.testing.assert_allclose(result["outputs"], booster.predict(xgb.DMatrix(X.iloc[:20])),
                               rtol=1e-6)


def test_lightgbm_regressor_with_categorical_and_nullable_columns(mixed):
    X, y = mixed
    X = X.assign(city=X["city"].astype("category"))
    model = lgb.LGBMRegressor(n_estimators=20, verbose=-1).fit(X, y)
    result = make_explainer(model, X).explain(X.iloc[:10])
    assert (result["explainer"], result["output_space"]) == ("tree", "prediction")
    assert_additive(result)
    np.testing.assert_allclose(result["outputs"], model.predict(X.iloc[:10]), rtol=1e-9)
    contributions = pd.DataFrame(result["contributions"], columns=result["columns"])
    assert contributions["colour"].abs().mean() > contributions["noise"].abs().mean()


def test_lightgbm_booster_multiclass_defaults_to_predicted_class(iris):
    X, y = iris
    params = {"objective": "multiclass", "num_class": 3, "verbose": -1, "min_data_in_leaf": 5}
    booster = lgb.train(params, lgb.Dataset(X, label=y), num_boost_round=20)
    result = make_explainer(booster, X).explain(X)
    assert (result["explainer"], result["output_space"]) == ("tree", "margin")
    assert result["class"] == np.argmax(booster.predict(X), axis=1).tolist()
    assert_additive(result)
    raw = booster.predict(X, raw_score=True)
    np.testing.assert_allclose(result["outputs"], raw[np.arange(len(X)), result["class"]])


def test_logistic_regression_matches_linear_shap_formula(cancer):
    X, y = cancer
    X = X.iloc[:, :6]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X, y)
    background = X.iloc[:100]
    result = make_explainer(model, background).explain(X.iloc[200:220])
    assert (result["explainer"], result["output_space"]) == ("linear", "log_odds")
    assert_additive(result)
    np.testing.assert_allclose(result["outputs"], model.decision_function(X.iloc[200:220]))
    scaled = model[0].transform(X.iloc[200:220])
    mean = model[0].transform(background).mean(axis=0)
    expected = model[-1].coef_[0] * (scaled - mean)  # independent features: coef * (x - E[x])
    np.testing.assert_allclose(result["contributions"], expected, atol=1e-9)


def test_kernel_explainer_recovers_exact_values_of_an_additive_callable(diabetes):
    X, _ = diabetes
    X = X[["age", "bmi", "bp"]]
    background = X.iloc[:15]  # under the summary size, so E[f] is over exactly these rows

    def score(frame: pd.DataFrame) -> np.ndarray:
        return 2.0 * frame["bmi"].to_numpy() - 3.0 * frame["bp"].to_numpy() + 0.5

    result = make_explainer(score, background).explain(X.iloc[100:105])
    assert (result["explainer"], result["output_space"], result["class"]) == (
        "kernel", "prediction", None)
    assert_additive(result)
    rows, mean = X.iloc[100:105], background.mean()
    expected = np.column_stack([np.zeros(5), 2.0 * (rows["bmi"] - mean["bmi"]),
                                -3.0 * (rows["bp"] - mean["bp"])])
    np.testing.assert_allclose(result["contributions"], expected, atol=1e-9)


def test_kernel_explainer_for_knn_reports_progress(cancer):
    X, y = cancer
    X = X.iloc[:, :5]
    model = KNeighborsClassifier().fit(X, y)
    calls: list[tuple[int, int]] = []
    explainer = make_explainer(model, X, nsamples=100)
    result = explainer.explain(X.iloc[:3], progress=lambda done, total: calls.append((done, total)))
    assert (result["explainer"], result["output_space"]) == ("kernel", "probability")
    assert calls == [(1, 3), (2, 3), (3, 3)]
    assert_additive(result)
    np.testing.assert_allclose(result["outputs"], model.predict_proba(X.iloc[:3])[:, 1])


def onehot_pipeline(X: pd.DataFrame, y: pd.Series):
    encode = ColumnTransformer([
        ("num", StandardScaler(), ["age", "visits"]),
        ("cat", OneHotEncoder(handle_unknown="ignore"), ["colour", "city"]),
    ])  # "noise" is dropped
    X = X.assign(visits=X["visits"].fillna(0))
    return make_pipeline(encode, RandomForestRegressor(n_estimators=20, random_state=0)).fit(X, y)


def test_pipeline_onehot_contributions_land_on_original_columns(mixed):
    X, y = mixed
    X = X.assign(visits=X["visits"].fillna(0))
    model = onehot_pipeline(X, y)
    rows = X.iloc[:12]
    result = make_explainer(model, X).explain(rows)
    assert result["explainer"] == "tree"
    assert result["columns"] == ["age", "colour", "city", "visits", "noise"]
    assert_additive(result)
    np.testing.assert_allclose(result["outputs"], model.predict(rows), rtol=1e-9)
    # independent check: shap on the expanded matrix, summed per original column by hand
    expanded = model[:-1].transform(rows)
    expanded = expanded.toarray() if hasattr(expanded, "toarray") else expanded
    raw = shap.TreeExplainer(model[-1]).shap_values(expanded)
    names = list(model[:-1].get_feature_names_out())
    contributions = pd.DataFrame(result["contributions"], columns=result["columns"])
    for column in ("age", "colour", "city", "visits"):
        picked = [i for i, name in enumerate(names) if name.split("__")[1].startswith(column)]
        assert len(picked) == {"colour": 3, "city": 2}.get(column, 1)
        np.testing.assert_allclose(contributions[column], raw[:, picked].sum(axis=1), atol=1e-10)
    assert (contributions["noise"] == 0).all()
    assert contributions["colour"].abs().mean() > 0.5  # red adds 3 to the target


def test_pipeline_that_mixes_columns_falls_back_to_kernel(diabetes):
    X, y = diabetes
    X = X.iloc[:, :4]
    model = make_pipeline(PCA(n_components=2), RandomForestRegressor(10, random_state=0)).fit(X, y)
    with pytest.warns(UserWarning, match="model-agnostic"):
        explainer = make_explainer(model, X, nsamples=60)
    result = explainer.explain(X.iloc[:2])
    assert result["explainer"] == "kernel" and result["columns"] == list(X.columns)
    assert_additive(result)
    np.testing.assert_allclose(result["outputs"], model.predict(X.iloc[:2]))


def test_unsupported_tree_input_falls_back_with_a_reason(mixed):
    X, y = mixed
    X = X.assign(city=X["city"].astype("category"))[["age", "colour", "city"]]
    model = HistGradientBoostingRegressor(max_iter=10).fit(X, y)
    with pytest.warns(UserWarning, match="ValueError"):
        result = make_explainer(model, X, nsamples=40).explain(X.iloc[:2])
    assert result["explainer"] == "kernel"
    assert_additive(result)


def test_multiclass_iris_explains_predicted_class(iris):
    X, y = iris
    model = RandomForestClassifier(n_estimators=20, random_state=0).fit(X, y)
    rows = X.iloc[::10]
    explainer = make_explainer(model, X)
    result = explainer.explain(rows)
    assert result["class"] == model.predict(rows).tolist()
    assert len(set(result["class"])) == 3
    proba = model.predict_proba(rows)
    np.testing.assert_allclose(result["outputs"], proba.max(axis=1))
    assert_additive(result)
    fixed = explainer.explain(rows, class_index=2)
    assert fixed["class"] == [2] * len(rows)
    np.testing.assert_allclose(fixed["outputs"], proba[:, 2])
    _, contributions, _ = explainer.explain_arrays(rows)  # every class at once
    assert contributions.shape == (len(rows), 3, 4)
    np.testing.assert_allclose(contributions.sum(axis=1), 0, atol=1e-12)  # probabilities sum to 1
    with pytest.raises(ValueError, match="class_index=3 is out of range"):
        explainer.explain(rows, class_index=3)


def test_clear_errors_for_bad_input(cancer):
    X, y = cancer
    model = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    explainer = make_explainer(model, X)
    with pytest.raises(ValueError, match="lacks the column"):
        explainer.explain(X.drop(columns=["mean radius"]).iloc[:2])
    with pytest.raises(ValueError, match="no rows"):
        explainer.explain(X.iloc[:0])
    with pytest.raises(ValueError, match="non-empty DataFrame"):
        make_explainer(model, X.iloc[:0])
    with pytest.raises(TypeError, match="predict"):
        make_explainer(object(), X)


def test_runtime_module_is_standalone(tmp_path, diabetes):
    tree = ast.parse(RUNTIME_FILE.read_text())
    top = {alias.name.split(".")[0] for node in tree.body if isinstance(node, ast.Import)
           for alias in node.names}
    top |= {node.module.split(".")[0] for node in tree.body if isinstance(node, ast.ImportFrom)}
    assert top <= {"__future__", "json", "threading", "time", "warnings", "collections", "contextlib",
                   "typing", "numpy", "pandas", "shap"}
    lazy = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
            for alias in node.names} - top
    assert lazy <= {"xgboost", "lightgbm", "sklearn"}, lazy  # only for models from them
    copy = tmp_path / "explainer.py"  # as it sits next to service.py in a bento
    shutil.copy(RUNTIME_FILE, copy)
    spec = importlib.util.spec_from_file_location("bento_explainer", copy)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    X, y = diabetes
    model = GradientBoostingRegressor(n_estimators=10, random_state=0).fit(X, y)
    assert module.make_explainer(model, X).explain(X.iloc[:3]) == make_explainer(
        model, X).explain(X.iloc[:3])


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_notebook_explanation_matches_runtime_and_plots(cancer):
    X, y = cancer
    model = RandomForestClassifier(n_estimators=20, random_state=0).fit(X, y)
    rows = X.iloc[:60]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # plotting must not touch pyplot or the global backend
        exp = explain(model, rows, background=X)
        figures = {"bar": exp.plot_bar(top=5), "beeswarm": exp.plot_beeswarm(top=5),
                   "waterfall": exp.plot_waterfall(row=3, top=5)}
    assert isinstance(exp, Explanation) and exp.values.shape == (60, 30)
    assert exp.to_dict() == make_explainer(model, X).explain(rows)
    np.testing.assert_allclose(exp.base_values + exp.values.sum(axis=1), exp.outputs,
                               atol=1e-12)
    assert exp.importance().index[0] == exp.values.abs().mean().idxmax()
    for name, fig in figures.items():
        png = exp.to_png(fig)
        width, height = png_size(png)
        assert len(png) > 5_000, name
        assert 600 <= width <= 1200 and 250 <= height <= 900, (name, width, height)
        labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
        assert len(labels) == 5 and labels[-1 if name != "waterfall" else 0].endswith(
            "26 other features"), labels
    bar_labels = [t.get_text() for t in figures["bar"].axes[0].get_yticklabels()]
    assert bar_labels[0] == exp.importance().index[0]  # most important on top
    html = exp._repr_html_()
    assert "data:image/png;base64," in html and exp.importance().index[0] in html
    png_size(figures["bar"]._repr_png_())


def test_notebook_explanation_for_one_class_and_one_row(iris):
    X, y = iris
    model = LogisticRegression(max_iter=2000).fit(X, y)
    exp = explain(model, X.iloc[[0, 60, 120]], background=X)
    assert exp.classes == [0, 1, 2] and exp.output_space == "margin"
    np.testing.assert_allclose(exp.outputs, model.decision_function(X.iloc[[0, 60, 120]]).max(1))
    setosa = exp.for_class(0)
    assert setosa.classes == [0, 0, 0]
    np.testing.assert_allclose(setosa.outputs, model.decision_function(X.iloc[[0, 60, 120]])[:, 0])
    single = explain(model, X.iloc[[120]])
    html = single._repr_html_()
    assert "<th>value</th>" in html and "data:image/png;base64," in html
    with pytest.raises(IndexError, match="row=5"):
        single.plot_waterfall(row=5)


@pytest.mark.slow
def test_example_notebook_runs_clean():
    path = ROOT / "example_notebooks" / "03_explain.ipynb"
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3  # bar, beeswarm, waterfall


def test_kernel_time_budget_stops_after_one_row_with_the_projection(cancer):
    X, y = cancer
    X = X.iloc[:, :5]
    model = KNeighborsClassifier().fit(X, y)
    calls: list[tuple[int, int]] = []
    explainer = make_explainer(model, X, nsamples=50, max_seconds=1e-9)
    with pytest.raises(ExplainTimeout, match=r"explaining 40 row\(s\).*max_seconds=1e-09.*"
                                             r"fewer rows.*nsamples \(now 50\)"):
        explainer.explain(X.iloc[:40], progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 40)]  # stopped as soon as the projection was known
    # the per-call budget overrides the default; one row has nothing left to project
    assert len(explainer.explain(X.iloc[:1])["outputs"]) == 1
    assert len(explainer.explain(X.iloc[:3], max_seconds=600.0)["outputs"]) == 3


def test_notebook_explain_time_budget_and_tree_models_are_not_bounded(cancer):
    X, y = cancer
    X = X.iloc[:, :5]
    knn = KNeighborsClassifier().fit(X, y)
    with pytest.raises(ExplainTimeout, match="max_seconds"):
        explain(knn, X.iloc[:30], background=X, nsamples=50, progress=False, max_seconds=1e-9)
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    exp = explain(forest, X, progress=False, max_seconds=1e-9)  # one piece: nothing to project
    assert len(exp) == len(X)


def test_notebook_progress_bar_for_the_model_agnostic_explainer(cancer, monkeypatch):
    import tqdm.auto

    bars: list = []

    class FakeBar:
        def __init__(self, *, total: int, **kwargs) -> None:
            self.total, self.n, self.closed, self.updates = total, 0, False, []
            bars.append(self)

        def update(self, step: int) -> None:
            self.n += step
            self.updates.append(step)

        def close(self) -> None:
            self.closed = True

    monkeypatch.setattr(tqdm.auto, "tqdm", FakeBar)
    X, y = cancer
    X = X.iloc[:, :5]
    knn = KNeighborsClassifier().fit(X, y)
    exp = explain(knn, X.iloc[:4], background=X, nsamples=50, progress=True)
    assert exp.explainer == "kernel" and len(bars) == 1
    assert (bars[0].total, bars[0].n, bars[0].updates, bars[0].closed) == (4, 4, [1, 1, 1, 1], True)
    explain(knn, X.iloc[:4], background=X, nsamples=50, progress=False)
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    explain(forest, X.iloc[:4], progress=True)  # tree explainers are fast: no bar
    assert len(bars) == 1
    # the bar is closed when the budget stops the run too
    with pytest.raises(ExplainTimeout):
        explain(knn, X.iloc[:4], background=X, nsamples=50, progress=True, max_seconds=1e-9)
    assert (bars[1].total, bars[1].n, bars[1].closed) == (4, 1, True)
