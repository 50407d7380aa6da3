"""nbdeploy: from a model in a notebook to a versioned, validated, explained service.

>>> import nbdeploy
>>> dep = nbdeploy.deploy(model, name="iris", sample=X_train)   # build, register, serve
>>> dep.predict(X_test.head())
>>> nbdeploy.rollback("iris")

Heavy imports (BentoML, SHAP) happen on first use, so ``import nbdeploy`` and
``%load_ext nbdeploy`` stay fast."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from nbdeploy.validate.record import record

__version__ = "0.1.0"

_LAZY = {
    "deploy": "nbdeploy.api",
    "deployments": "nbdeploy.api",
    "get": "nbdeploy.api",
    "start": "nbdeploy.api",
    "stop": "nbdeploy.api",
    "promote": "nbdeploy.api",
    "rollback": "nbdeploy.api",
    "load_model": "nbdeploy.api",
    "Deployment": "nbdeploy.deployment",
    "explain": "nbdeploy.explanations",
    "Explanation": "nbdeploy.explanations",
    "panel": "nbdeploy.notebook.panel",
    "wait": "nbdeploy.notebook.jobs",
    "Registry": "nbdeploy.registry",
    "NbdeployError": "nbdeploy.errors",
}

__all__ = ["__version__", "record", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nbdeploy' has no attribute {name!r}")


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext nbdeploy``: register %deploy, %%deploy and %deployments."""
    from nbdeploy.notebook.magic import DeployMagics

    ipython.register_magics(DeployMagics)


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "nbdeploy"}]


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    """``jupyter server extension`` finds the ``nbdeploy`` ExtensionApp here."""
    from nbdeploy.server import _jupyter_server_extension_points as points

    return points()
