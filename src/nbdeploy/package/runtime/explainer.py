"""Shapley-value explanations of one trained model, identical in a notebook and in a served bento.

Standalone on purpose: it imports numpy, pandas and shap (and sklearn, xgboost or lightgbm only
when the model comes from them), so nbdeploy copies it verbatim next to every ``service.py``.

``output_space`` names the quantity that is explained; additivity holds in that space:

- ``probability``: sklearn forests and single trees (classifiers), model-agnostic classifiers;
- ``log_odds``: binary boosted trees and binary logistic models (score before the sigmoid);
- ``margin``: multi-class boosted or linear classifiers (score before the softmax), other
  decision functions, and regressors whose raw score is not what ``predict`` returns;
- ``prediction``: regressors and plain callables (what ``predict`` or the callable returns).

``base_values + sum(contributions) == outputs`` to 1e-6 relative for sklearn, lightgbm and linear
models (float64); xgboost works in float32, so expect about 1e-5. The model-agnostic (kernel)
explainer enforces the sum exactly too; there each single contribution is an estimate whose
error shrinks as ``nsamples`` grows. Trees are explained "tree path dependent": the base value
is the model's mean output over its training data, as recorded in the trees.

Time budget (``max_seconds``): the model-agnostic explainer costs ``nsamples`` model calls per
row, so it explains one row at a time and, after each row, projects the total time from the
rows done so far. As soon as that projection exceeds ``max_seconds`` it raises
:class:`ExplainTimeout`, whose message gives the projection and the ways out (fewer rows, a
larger ``max_seconds``, a smaller ``nsamples``). It never quietly lowers ``nsamples``: values
computed with fewer samples would differ from the served ones for the same rows. Tree and
linear explainers are fast and run in one piece; the budget does not apply to them.
"""

from __future__ import annotations

import json
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import numpy as np
import pandas as pd
import shap

Progress = Callable[[int, int], None]
AsInput = Callable[[pd.DataFrame], Any]
Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]

_SK_TREES = {
    f"{kind}{task}"
    for kind in ("RandomForest", "ExtraTrees", "GradientBoosting", "HistGradientBoosting",
                 "DecisionTree", "ExtraTree")
    for task in ("Classifier", "Regressor")
}


class ExplainTimeout(RuntimeError):
    """The model-agnostic explainer would not finish within its ``max_seconds`` budget."""


def _family(model: Any) -> str:
    """Which explainer suits the (final) estimator: xgboost, lightgbm, sktree, linear or other."""
    mod, name = type(model).__module__, type(model).__name__
    if mod.startswith(("xgboost", "lightgbm")):
        return mod.split(".")[0]
    if mod.startswith("sklearn.") and name in _SK_TREES:
        return "sktree"
    linear = mod.startswith("sklearn.linear_model") or name in ("LinearSVC", "LinearSVR")
    return "linear" if linear and hasattr(model, "coef_") else "other"


def _classes(model: Any, family: str) -> list | None:
    """The model's class labels (JSON-ready), or None for a regressor."""
    if hasattr(model, "classes_"):
        return [c.item() if hasattr(c, "item") else c for c in model.classes_]
    if type(model).__name__ != "Booster":
        return None
    if family == "xgboost":
        learner = json.loads(model.save_config())["learner"]
        objective = learner["objective"]["name"].split(":")[0]
        count = int(learner["learner_model_param"]["num_class"])
    else:
        objective = model.params.get("objective") or model.dump_model(num_iteration=1)["objective"]
        objective = str(objective).split()[0]
        count = model.num_model_per_iteration()
    if objective == "binary":
        return [0, 1]
    if objective in ("multi", "multiclass", "softmax", "multiclassova", "ova", "ovr"):
        return list(range(count))
    return None


def _as_float(X: Any) -> np.ndarray:
    """A dense float matrix (NaN for missing) from a frame, sparse matrix or array."""
    if hasattr(X, "toarray"):
        X = X.toarray()
    if isinstance(X, pd.DataFrame):
        return X.to_numpy(dtype=float, na_value=np.nan)
    return np.asarray(X, dtype=float)


def _dmatrix(X: Any, names: list[str] | None = None) -> Any:
    """An xgboost DMatrix: pandas categories kept, all-numeric data passed as a fast float array."""
    import xgboost

    if isinstance(X, pd.DataFrame) and not _numeric(X):
        return xgboost.DMatrix(X, enable_categorical=True)
    names = names or ([str(c) for c in X.columns] if isinstance(X, pd.DataFrame) else None)
    return xgboost.DMatrix(_as_float(X), feature_names=names)


def _numeric(X: pd.DataFrame) -> bool:
    return all(pd.api.types.is_numeric_dtype(d) for d in X.dtypes)


def _result(expected: Any, phi: Any, out: Any, n: int) -> Arrays:
    """shap's expected value, (n, F[, K]) values and outputs as (n, K), (n, K, F), (n, K)."""
    phi = np.asarray(phi, dtype=float)
    phi = phi[:, None, :] if phi.ndim == 2 else phi.transpose(0, 2, 1)
    base = np.repeat(np.asarray(expected, dtype=float).reshape(1, -1), n, axis=0)
    return base, phi, np.asarray(out, dtype=float).reshape(n, -1)


class _TreeEngine:
    """shap.TreeExplainer (tree path dependent) plus the model's own raw output."""

    kind = "tree"

    def __init__(self, model: Any, family: str, background: Any) -> None:
        self.model, self.family = model, family
        self.shap = shap.TreeExplainer(model, feature_perturbation="tree_path_dependent")

    def __call__(self, X: Any) -> Arrays:
        frame = isinstance(X, pd.DataFrame) and not _numeric(X)
        if self.family == "xgboost":
            import xgboost

            booster = self.model.get_booster() if hasattr(self.model, "get_booster") else self.model
            # a few rows gain nothing from threads, and on a busy host they wait for every core
            small = X.shape[0] <= 256
            with xgboost.config_context(nthread=1) if small else nullcontext():
                data = _dmatrix(X, booster.feature_names)
                out = booster.predict(data, output_margin=True)
                phi = self.shap.shap_values(data, check_additivity=False)
            return _result(self.shap.expected_value, phi, out, X.shape[0])
        elif self.family == "lightgbm":  # pandas -> native conversion is slow for one row
            data = X if frame else _as_float(X)
            out = getattr(self.model, "booster_", self.model).predict(data, raw_score=True)
        else:  # sklearn: shap's own walk through the same trees (no joblib overhead)
            data = _as_float(X)
            out = self.shap.model.predict(data)
        phi = self.shap.shap_values(data, check_additivity=False)
        return _result(self.shap.expected_value, phi, out, X.shape[0])


class _LinearEngine:
    """shap.LinearExplainer with independent features over the background sample."""

    kind = "linear"

    def __init__(self, model: Any, family: str, background: Any) -> None:
        self.model = model
        self.shap = shap.LinearExplainer(model, _as_float(background))

    def __call__(self, X: Any) -> Arrays:
        score = getattr(self.model, "decision_function", None) or self.model.predict
        phi = self.shap.shap_values(_as_float(X))
        return _result(self.shap.expected_value, phi, score(X), X.shape[0])


class _Codec:
    """Mixed-dtype frame <-> float matrix (other values as level codes), for the kernel."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.columns, self.dtypes = list(frame.columns), list(frame.dtypes)
        self.levels: dict[Any, list] = {
            c: [] for c, d in zip(self.columns, self.dtypes, strict=True)
            if not pd.api.types.is_numeric_dtype(d)
        }
        self.codes: dict[Any, dict] = {c: {} for c in self.levels}

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        """Floats for numbers, level codes for everything else, NaN for missing."""
        out = np.empty((len(frame), len(self.columns)))
        for j, col in enumerate(self.columns):
            if col not in self.levels:
                out[:, j] = frame[col].to_numpy(dtype=float, na_value=np.nan)
                continue
            codes, levels, values = self.codes[col], self.levels[col], frame[col].astype(object)
            for value in values[values.notna()].unique():
                if value not in codes:
                    codes[value] = len(levels)
                    levels.append(value)
            out[:, j] = values.map(codes).to_numpy(dtype=float, na_value=np.nan)
        return out

    def decode(self, matrix: np.ndarray) -> pd.DataFrame:
        """The frame the model expects, with the original dtypes."""
        data = {}
        for j, (col, dtype) in enumerate(zip(self.columns, self.dtypes, strict=True)):
            column = matrix[:, j]
            if col in self.levels:
                levels = np.array([*self.levels[col], None], dtype=object)
                column = levels[np.where(np.isnan(column), -1, column).astype(int)]
            data[col] = pd.Series(column).astype(dtype)
        return pd.DataFrame(data, columns=self.columns)


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed numpy's global RNG (KernelExplainer samples with it), then restore it."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


class _KernelEngine:
    """Model-agnostic: shap.KernelExplainer on a k-means summary of the background."""

    kind = "kernel"

    def __init__(self, fn: Callable, background: pd.DataFrame, k: int, nsamples: int | None,
                 seed: int) -> None:
        self.fn, self.seed, self.codec = fn, seed, _Codec(background)
        self.lock = threading.Lock()  # the shap object keeps per-call state
        data = summary = self.codec.encode(background)
        if len(data) > k:
            summary = data[np.random.default_rng(seed).choice(len(data), k, replace=False)]
            if not np.isnan(data).any():
                try:  # k-means snaps each centre to values that occur in each column
                    summary = shap.kmeans(data, k)
                except ImportError:  # no scikit-learn here: keep the random sample
                    pass
        self.nsamples = nsamples or min(2 * data.shape[1] + 2048, 500)
        self.shap = shap.KernelExplainer(self._f, summary)

    def _f(self, matrix: np.ndarray) -> np.ndarray:
        return np.asarray(self.fn(self.codec.decode(matrix)), dtype=float)

    def __call__(self, X: pd.DataFrame) -> Arrays:
        with self.lock, _seeded(self.seed):
            phi = self.shap.shap_values(self.codec.encode(X), nsamples=self.nsamples,
                                        l1_reg=False, silent=True)
        return _result(self.shap.expected_value, phi, self.fn(X), len(X))


class _Unmappable(Exception):
    """A preprocessing step mixes several input columns into one output."""


def _owner(name: str, inputs: list[str]) -> int:
    """Index of the input column an output name comes from (longest matching name wins)."""
    hits = [i for i, col in enumerate(inputs)
            if name == col or name.startswith(col + "_") or name.endswith("_" + col)]
    if not hits:
        raise _Unmappable(name)
    return max(hits, key=lambda i: len(inputs[i]))


def _select(cols: Any, names: list[str]) -> list[int]:
    """A ColumnTransformer column selection as input positions."""
    if isinstance(cols, slice):
        return list(range(len(names)))[cols]
    cols = [cols] if isinstance(cols, (str, int, np.integer)) else list(cols)
    if cols and isinstance(cols[0], (bool, np.bool_)):
        return [i for i, keep in enumerate(cols) if keep]
    return [names.index(c) if isinstance(c, str) else int(c) for c in cols]


def _column_map(step: Any, names: list[str]) -> tuple[list[int], list[str]]:
    """For each output of a fitted transformer, the input it comes from; and the output names."""
    if step is None or (isinstance(step, str) and step in ("passthrough", "drop")):
        keep = step != "drop"
        return list(range(len(names))) * keep, list(names) * keep
    if hasattr(step, "steps"):  # Pipeline: compose the steps
        index, current = list(range(len(names))), list(names)
        for _, sub in step.steps:
            sub_map, current = _column_map(sub, current)
            index = [index[j] for j in sub_map]
        return index, current
    if hasattr(step, "transformers_"):  # ColumnTransformer: each part on its own columns
        out_names = [str(n) for n in step.get_feature_names_out()]
        index = [-1] * len(out_names)
        for part, trans, cols in step.transformers_:
            where = step.output_indices_[part]
            if where.stop > where.start:
                chosen = _select(cols, names)
                sub_map, _ = _column_map(trans, [names[i] for i in chosen])
                if len(sub_map) != where.stop - where.start:
                    raise _Unmappable(part)
                index[where] = [chosen[j] for j in sub_map]
        return index, out_names
    if hasattr(step, "transformer_list"):  # FeatureUnion: every part sees every column
        index, out_names = [], []
        for part, trans in step.transformer_list:
            sub_map, sub_names = _column_map(trans, names)
            index, out_names = index + sub_map, out_names + [f"{part}__{n}" for n in sub_names]
        return index, out_names
    try:
        out_names = [str(n) for n in step.get_feature_names_out(names)]
    except Exception as exc:
        raise _Unmappable(type(step).__name__) from exc
    if len(names) == 1:
        return [0] * len(out_names), out_names
    return [_owner(name, names) for name in out_names], out_names


def _split(model: Any) -> tuple[Any, Any]:
    """(preprocessing, final estimator) of a sklearn Pipeline; (None, model) otherwise."""
    if not (type(model).__module__.startswith("sklearn.") and hasattr(model, "steps")):
        return None, model
    return (model[:-1] if len(model.steps) > 1 else None), model.steps[-1][1]


def _agnostic(model: Any, classes: list | None) -> Callable:
    """What the kernel explainer evaluates: probabilities, scores, predictions or the callable."""
    if classes is not None:
        for method in ("predict_proba", "decision_function"):
            if hasattr(model, method):
                return getattr(model, method)
        raise TypeError(f"{type(model).__name__} predicts labels only; give it predict_proba() "
                        "or decision_function() so there is a number to explain")
    if hasattr(model, "predict"):
        return model.predict
    if callable(model):
        return model
    raise TypeError(f"cannot explain a {type(model).__name__}: give a model with predict() or "
                    "predict_proba(), or a function taking a DataFrame and returning numbers")


def _output_space(model: Any, family: str, classes: list | None, X: Any,
                  out: np.ndarray) -> str:
    """Name what the engine explains by comparing its outputs with the model's own answers."""
    booster = type(model).__name__ == "Booster"
    data = _dmatrix(X) if booster and family == "xgboost" else X
    try:
        if classes is None:
            pred = np.asarray(model.predict(data) if hasattr(model, "predict") else out, float)
            same = np.allclose(pred.reshape(out.shape), out, rtol=1e-4, atol=1e-6)
            return "prediction" if same else "margin"
        proba = model.predict_proba(X) if hasattr(model, "predict_proba") else (
            model.predict(data) if booster else None)
        if proba is None:
            return "margin"
        proba = np.asarray(proba, dtype=float).reshape(len(X), -1)
        proba = proba[:, 1:] if proba.shape[1] == 2 and out.shape[1] == 1 else proba
        if proba.shape == out.shape and np.allclose(proba, out, rtol=1e-4, atol=1e-6):
            return "probability"
        logistic = out.shape[1] == 1 and np.allclose(proba, 1 / (1 + np.exp(-out)), atol=1e-5)
        return "log_odds" if logistic else "margin"
    except Exception:  # a model that cannot answer here: its raw score is what we explain
        return "margin" if classes is not None else "prediction"


class Explainer:
    """A ready-to-use explainer: built once by make_explainer, then ``explain(X)`` per request."""

    def __init__(self, model: Any, engine: Any, pre: Any, matrix: np.ndarray | None,
                 columns: list, classes: list | None, output_space: str,
                 progress: Progress | None = None, max_seconds: float | None = None,
                 as_input: AsInput | None = None) -> None:
        self.model, self.engine, self.pre, self.matrix = model, engine, pre, matrix
        self.columns, self.classes, self.output_space = columns, classes, output_space
        self.kind: str = engine.kind
        self.progress, self.max_seconds, self.as_input = progress, max_seconds, as_input

    def _engine_input(self, chunk: pd.DataFrame) -> Any:
        """What the engine takes: the kernel its frame; the others what the model's own
        preprocessing (or, without any, the model) takes from predict."""
        if self.kind == "kernel":
            return chunk
        data = self.as_input(chunk) if self.as_input is not None else chunk
        return self.pre.transform(data) if self.pre is not None else data

    def width(self) -> int:
        """How many output slots (classes) each row has."""
        return len(self.classes) if self.classes else 1

    def check_class_index(self, class_index: int | None) -> None:
        """Refuse a class index this model does not have, before any work is done."""
        if class_index is not None and not 0 <= class_index < self.width():
            raise ValueError(f"class_index={class_index} is out of range: this model has "
                             f"{self.width()} output(s); use 0..{self.width() - 1}, "
                             "or None for the default")

    def _over_budget(self, started: float, done: int, total: int, budget: float | None) -> None:
        """Raise ExplainTimeout when the rows left would take the run past ``budget`` seconds
        (model-agnostic explainer only: tree and linear ones are not bounded)."""
        if budget is None or done >= total or self.kind != "kernel":
            return
        spent = time.perf_counter() - started
        projected = spent / done * total
        if projected > budget:
            nsamples = getattr(self.engine, "nsamples", None)
            raise ExplainTimeout(
                f"explaining {total} row(s) with the model-agnostic ({self.kind}) explainer would "
                f"take about {projected:.1f} s ({spent / done:.2f} s per row, {done} done), over "
                f"the max_seconds={budget:g} budget; explain fewer rows, raise max_seconds, or "
                f"lower nsamples (now {nsamples})")

    def frame(self, X: Any) -> pd.DataFrame:
        """X as a DataFrame holding exactly the model's columns, in training order."""
        if not isinstance(X, pd.DataFrame):
            X = pd.DataFrame(X, columns=self.columns)
        missing = [c for c in self.columns if c not in X.columns]
        if missing:
            raise ValueError(f"X lacks the column(s) {missing} the model was trained on; "
                             f"pass a DataFrame with columns {self.columns}")
        return X[self.columns]

    def explain_arrays(self, X: Any, *, progress: Progress | None = None,
                       max_seconds: float | None = None) -> Arrays:
        """Base (n, C), contributions (n, C, columns) and outputs (n, C): one slot per class.

        ``max_seconds`` (default: the one given to make_explainer) bounds the model-agnostic
        explainer: ExplainTimeout as soon as the projected total exceeds it (module docstring).
        """
        X, progress = self.frame(X), progress or self.progress
        budget = self.max_seconds if max_seconds is None else max_seconds
        if X.empty:
            raise ValueError("X has no rows: pass at least one row to explain")
        step, parts = (1 if self.kind == "kernel" else 10_000), []
        started = time.perf_counter()
        for start in range(0, len(X), step):
            chunk = X.iloc[start:start + step]
            parts.append(self.engine(self._engine_input(chunk)))
            done = min(start + step, len(X))
            if progress is not None:
                progress(done, len(X))
            self._over_budget(started, done, len(X), budget)
        base, phi, out = (np.concatenate(p) for p in zip(*parts, strict=True))
        if self.matrix is not None:  # sum expanded (e.g. one-hot) columns back onto the originals
            phi = phi @ self.matrix
        if self.classes is not None and len(self.classes) == 2 and out.shape[1] == 1:
            flip = 1.0 if self.output_space == "probability" else 0.0  # the negative class's view
            base, phi, out = (np.concatenate([flip - base, base], 1),
                              np.concatenate([-phi, phi], 1), np.concatenate([flip - out, out], 1))
        return base, phi, out

    def default_class(self, outputs: np.ndarray) -> np.ndarray:
        """Slot explained per row by default: the positive class if binary, else the predicted."""
        if self.classes is None or outputs.shape[1] == 1:
            return np.zeros(len(outputs), dtype=int)
        if outputs.shape[1] == 2:
            return np.ones(len(outputs), dtype=int)
        return np.argmax(outputs, axis=1)

    def choose(self, outputs: np.ndarray, class_index: int | None) -> np.ndarray:
        """The slot to report per row: class_index for all rows, or the default class."""
        width = outputs.shape[1]
        if class_index is None:
            return self.default_class(outputs)
        if not 0 <= class_index < width:
            raise ValueError(f"class_index={class_index} is out of range: this model has "
                             f"{width} output(s); use 0..{width - 1}, or None for the default")
        return np.full(len(outputs), class_index)

    def explain(self, X: Any, *, class_index: int | None = None,
                progress: Progress | None = None, max_seconds: float | None = None) -> dict:
        """JSON-ready contributions of each original column, for each row of X.

        By default each row explains its predicted class (the positive class if binary);
        ``class_index`` explains that class for every row instead."""
        self.check_class_index(class_index)
        base, phi, out = self.explain_arrays(X, progress=progress, max_seconds=max_seconds)
        chosen, rows = self.choose(out, class_index), np.arange(len(out))
        return {
            "columns": [str(c) for c in self.columns],
            "base_values": base[rows, chosen].tolist(),
            "contributions": phi[rows, chosen].tolist(),
            "outputs": out[rows, chosen].tolist(),
            "output_space": self.output_space,
            "class": None if self.classes is None else [self.classes[i] for i in chosen],
            "explainer": self.kind,
        }


def make_explainer(model: Any, background: pd.DataFrame, *, max_background: int = 100,
                   seed: int = 0, nsamples: int | None = None, kernel_background: int = 20,
                   progress: Progress | None = None, max_seconds: float | None = None,
                   as_input: AsInput | None = None) -> Explainer:
    """Choose tree, linear or model-agnostic SHAP for ``model`` and build it once.

    ``max_seconds`` is the default time budget of the model-agnostic explainer (None: no
    bound; see the module docstring). ``as_input`` turns a frame of the model's columns into
    what ``predict`` is given (e.g. a numpy array for a model fitted on one), so the model
    sees the same input here as in the service's /predict.
    """
    feed: AsInput = as_input if as_input is not None else (lambda frame: frame)
    if not isinstance(background, pd.DataFrame) or background.empty:
        raise ValueError("background must be a non-empty DataFrame with the model's input "
                         "columns (for example a few hundred training rows)")
    columns = list(getattr(model, "feature_names_in_", background.columns))
    missing = [c for c in columns if c not in background.columns]
    if missing:
        raise ValueError(f"background lacks the column(s) {missing} the model was trained on")
    background = background[columns]
    if len(background) > max_background:
        background = background.sample(n=max_background, random_state=seed)
    pre, estimator = _split(model)
    family = _family(estimator)
    classes = _classes(model if hasattr(model, "classes_") else estimator, family)
    probe = background.iloc[: min(5, len(background))]
    engine, matrix = None, None
    if family != "other":
        try:
            if pre is not None:
                index, _ = _column_map(pre, [str(c) for c in columns])
                matrix = np.zeros((len(index), len(columns)))
                matrix[np.arange(len(index)), index] = 1.0
            fitted = pre.transform(feed(background)) if pre is not None else feed(background)
            kind = _LinearEngine if family == "linear" else _TreeEngine
            engine = kind(estimator, family, fitted)
            _, phi, out = engine(pre.transform(feed(probe)) if pre is not None else feed(probe))
            if matrix is not None and phi.shape[2] != len(matrix):
                raise _Unmappable("output width differs from get_feature_names_out")
        except Exception as exc:
            reason = f"a preprocessing step mixes columns ({exc})" if isinstance(
                exc, _Unmappable) else f"{type(exc).__name__}: {exc}"
            warnings.warn(f"explaining {type(estimator).__name__} with the slower model-agnostic "
                          f"explainer because {reason}", stacklevel=2)
            engine, matrix = None, None
    if engine is None:  # the whole model (pipeline included) on the original columns
        pre, method = None, _agnostic(model, classes)
        fn = method if as_input is None else (lambda frame: method(feed(frame)))
        engine = _KernelEngine(fn, background, kernel_background, nsamples, seed)
        out = np.asarray(fn(probe), dtype=float).reshape(len(probe), -1)
    space = _output_space(model, family, classes, feed(probe), out)
    if classes is None and out.shape[1] > 1:  # a callable returning one column per class
        classes = list(range(out.shape[1]))
    return Explainer(model, engine, pre, matrix, columns, classes, space, progress, max_seconds,
                     as_input)
