"""One adapter per framework: detect, describe and save a model into the BentoML store.

Adapters are tried in order; the first whose ``matches`` is true wins. A new framework is
one new ``Adapter`` subclass passed to ``register_adapter`` (papermill's engine pattern).
"""

from __future__ import annotations

import hashlib
import io
import pickle
import sys
from dataclasses import dataclass, field
from typing import Any, ClassVar

import cloudpickle

from nbdeploy.errors import UnsupportedModelError


@dataclass
class ModelInfo:
    """What the service template needs to know about a captured model."""

    framework: str
    task: str  # "classification" | "regression" | "unknown"
    classes: list[Any] | None = None
    load_import: str = ""  # import line for the generated service
    load_expr: str = ""  # expression loading the model from `self.model_ref`
    has_proba: bool = False
    modules: set[str] = field(default_factory=set)
    extra: dict[str, Any] = field(default_factory=dict)  # merged into the service's metadata.json


class Adapter:
    """Base adapter: subclasses set ``name`` and implement the four hooks."""

    name: ClassVar[str] = ""
    packages: ClassVar[tuple[str, ...]] = ()

    def matches(self, obj: Any) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def info(self, obj: Any) -> ModelInfo:  # pragma: no cover - abstract
        raise NotImplementedError

    def save(self, obj: Any, tag: str, *, labels: dict, metadata: dict) -> Any:
        """Save into the BentoML model store and return the bentoml.Model."""
        raise NotImplementedError  # pragma: no cover


def _task_of(obj: Any) -> tuple[str, list[Any] | None, bool]:
    est = obj
    steps = getattr(obj, "steps", None)
    if steps:
        est = steps[-1][1]
    kind = getattr(est, "_estimator_type", None)
    try:  # scikit-learn >= 1.6 exposes tags instead of _estimator_type
        from sklearn.utils import get_tags

        kind = get_tags(est).estimator_type or kind
    except Exception:
        pass
    classes = getattr(obj, "classes_", None)
    if classes is None:
        classes = getattr(est, "classes_", None)
    has_proba = hasattr(obj, "predict_proba")
    if kind == "classifier" or (classes is not None and has_proba):
        return "classification", [_plain(c) for c in classes] if classes is not None else None, has_proba
    if kind == "regressor":
        return "regression", None, False
    return "unknown", None, has_proba and classes is not None


def _plain(value: Any) -> Any:
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def _is_sklearn(obj: Any) -> bool:
    try:
        from sklearn.base import BaseEstimator
    except ImportError:
        return False
    return isinstance(obj, BaseEstimator)


class SklearnAdapter(Adapter):
    """scikit-learn estimators, Pipelines and ColumnTransformers."""

    name = "sklearn"
    packages = ("scikit-learn",)

    def matches(self, obj: Any) -> bool:
        return _is_sklearn(obj) and hasattr(obj, "predict")

    def info(self, obj: Any) -> ModelInfo:
        task, classes, proba = _task_of(obj)
        return ModelInfo(
            framework=self.name, task=task, classes=classes, has_proba=proba,
            load_import="import sklearn  # noqa: F401  (needed to unpickle the estimator)",
            load_expr="bentoml.sklearn.load_model(self.model_ref)",
        )

    def save(self, obj: Any, tag: str, *, labels: dict, metadata: dict) -> Any:
        import bentoml

        return bentoml.sklearn.save_model(tag, obj, labels=labels, metadata=metadata)


XGB_FILE = "model.ubj"


class XGBoostAdapter(Adapter):
    """XGBoost: the scikit-learn API (XGBClassifier, XGBRegressor) and raw ``Booster``,
    saved in XGBoost's own portable format (no pickle)."""

    name = "xgboost"
    packages = ("xgboost", "xgboost-cpu")

    def matches(self, obj: Any) -> bool:
        mod = sys.modules.get("xgboost")
        return mod is not None and isinstance(obj, (mod.Booster, mod.XGBModel))

    def info(self, obj: Any) -> ModelInfo:
        import xgboost as xgb

        path = f'self.model_ref.path_of("{XGB_FILE}")'
        if isinstance(obj, xgb.Booster):
            objective = _booster_objective(obj)
            task = "classification" if objective.startswith(("binary:", "multi:")) else "regression"
            return ModelInfo(
                framework=self.name, task=task, load_import="import xgboost as xgb",
                load_expr=f"xgb.Booster(model_file={path})",
            )
        task, classes, proba = _task_of(obj)
        cls = type(obj).__name__
        return ModelInfo(
            framework=self.name, task=task, classes=classes, has_proba=proba,
            load_import="import xgboost as xgb",
            load_expr=f"xgb.{cls}()\n        self.model.load_model({path})",
        )

    def save(self, obj: Any, tag: str, *, labels: dict, metadata: dict) -> Any:
        import bentoml
        import xgboost as xgb

        kind = "Booster" if isinstance(obj, xgb.Booster) else type(obj).__name__
        with bentoml.models.create(
            tag, labels=labels, metadata={**metadata, "xgboost_class": kind}, module="nbdeploy.xgboost"
        ) as model:
            obj.save_model(model.path_of(XGB_FILE))
        return model


def _booster_objective(booster: Any) -> str:
    import json

    try:
        return json.loads(booster.save_config())["learner"]["objective"]["name"]
    except Exception:
        return ""


class LightGBMAdapter(Adapter):
    """LightGBM: raw ``Booster`` through bentoml.lightgbm; the scikit-learn API through
    bentoml.sklearn (it keeps ``predict_proba`` and ``classes_``)."""

    name = "lightgbm"
    packages = ("lightgbm",)

    def matches(self, obj: Any) -> bool:
        mod = sys.modules.get("lightgbm")
        return mod is not None and isinstance(obj, (mod.Booster, mod.LGBMModel))

    def info(self, obj: Any) -> ModelInfo:
        import lightgbm as lgb

        if isinstance(obj, lgb.Booster):
            objective = str(obj.params.get("objective", ""))
            task = (
                "classification"
                if objective.startswith(("binary", "multiclass", "cross_entropy"))
                else "regression"
            )
            return ModelInfo(
                framework=self.name, task=task,
                load_import="import lightgbm as lgb  # noqa: F401",
                load_expr="bentoml.lightgbm.load_model(self.model_ref)",
            )
        task, classes, proba = _task_of(obj)
        return ModelInfo(
            framework=self.name, task=task, classes=classes, has_proba=proba,
            load_import="import lightgbm as lgb  # noqa: F401",
            load_expr="bentoml.sklearn.load_model(self.model_ref)",
        )

    def save(self, obj: Any, tag: str, *, labels: dict, metadata: dict) -> Any:
        import bentoml
        import lightgbm as lgb

        if isinstance(obj, lgb.Booster):
            return bentoml.lightgbm.save_model(tag, obj, labels=labels, metadata=metadata)
        return bentoml.sklearn.save_model(tag, obj, labels=labels, metadata=metadata)


SKOPS_FILE = "model.skops"


class SkopsAdapter(SklearnAdapter):
    """scikit-learn saved with skops instead of pickle; loaded with an explicit list of
    trusted types recorded at deploy time (chosen with ``format="skops"``)."""

    name = "skops"
    packages = ("scikit-learn", "skops")

    def info(self, obj: Any) -> ModelInfo:
        base = super().info(obj)
        base.framework = self.name
        base.load_import = "import skops.io as sio"
        base.load_expr = (
            f'sio.load(self.model_ref.path_of("{SKOPS_FILE}"), trusted=METADATA["skops_trusted"])'
        )
        return base

    def save(self, obj: Any, tag: str, *, labels: dict, metadata: dict) -> Any:
        import bentoml
        import skops.io as sio

        with bentoml.models.create(tag, labels=labels, metadata=metadata, module="nbdeploy.skops") as model:
            path = model.path_of(SKOPS_FILE)
            sio.dump(obj, path)
            trusted = sorted(sio.get_untrusted_types(file=path))
            with open(model.path_of("trusted_types.json"), "w") as fh:
                import json

                json.dump(trusted, fh)
        return model


def trusted_types(model_dir: str) -> list[str]:
    """The skops types a model was saved with (its explicit trusted list)."""
    import json
    from pathlib import Path

    path = Path(model_dir) / "trusted_types.json"
    return json.loads(path.read_text()) if path.exists() else []


PYFUNC_FILE = "model.pkl"


class PyFuncAdapter(Adapter):
    """Any object with ``predict`` or any plain callable, saved with cloudpickle.

    Classes and functions defined in the notebook (``__main__``) are captured by value,
    so the served process does not need the notebook."""

    name = "pyfunc"
    packages = ("cloudpickle",)

    def matches(self, obj: Any) -> bool:
        return callable(getattr(obj, "predict", None)) or (
            callable(obj) and not isinstance(obj, type)
        )

    def info(self, obj: Any) -> ModelInfo:
        task, classes, proba = _task_of(obj)
        return ModelInfo(
            framework=self.name, task=task, classes=classes, has_proba=proba,
            load_import="import cloudpickle",
            load_expr=f'cloudpickle.loads(open(self.model_ref.path_of("{PYFUNC_FILE}"), "rb").read())',
        )

    def save(self, obj: Any, tag: str, *, labels: dict, metadata: dict) -> Any:
        import bentoml

        with bentoml.models.create(tag, labels=labels, metadata=metadata) as model:
            with open(model.path_of(PYFUNC_FILE), "wb") as fh:
                fh.write(cloudpickle.dumps(obj))
        return model


ADAPTERS: list[Adapter] = [XGBoostAdapter(), LightGBMAdapter(), SklearnAdapter(), PyFuncAdapter()]


def register_adapter(adapter: Adapter, *, first: bool = True) -> None:
    """Add a framework adapter; by default it is tried before the built-in ones."""
    ADAPTERS.insert(0 if first else len(ADAPTERS), adapter)


def adapter_for(obj: Any) -> Adapter:
    """Return the adapter that captures ``obj`` or raise a clear UnsupportedModelError."""
    for adapter in ADAPTERS:
        if adapter.matches(obj):
            return adapter
    supported = ", ".join(a.name for a in ADAPTERS)
    raise UnsupportedModelError(
        f"cannot deploy an object of type {type(obj).__module__}.{type(obj).__qualname__}: "
        f"nbdeploy supports {supported} models (scikit-learn estimators and Pipelines, "
        "XGBoost and LightGBM models or Boosters, any object with a .predict method, or a "
        "plain function taking a DataFrame). Pass the fitted model, not its class."
    )


class _ModuleRecorder(cloudpickle.Pickler):
    """A cloudpickle Pickler that notes the module of every object it pickles."""

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.modules: set[str] = set()

    def reducer_override(self, obj: Any) -> Any:
        module = getattr(obj, "__module__", None) if isinstance(obj, type) or callable(obj) else None
        module = module or getattr(type(obj), "__module__", None)
        if isinstance(module, str):
            self.modules.add(module.split(".")[0])
        return super().reducer_override(obj)


def fingerprint(obj: Any) -> tuple[str, set[str]]:
    """sha256 of the model's cloudpickle bytes, and the top-level modules it references."""
    buf = io.BytesIO()
    pickler = _ModuleRecorder(buf)
    pickler.dump(obj)
    return hashlib.sha256(buf.getvalue()).hexdigest(), pickler.modules
