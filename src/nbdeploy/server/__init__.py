"""jupyter_server extension: the REST API behind the JupyterLab Deployments sidebar.

Importing this package is cheap (no tornado, pandas or bentoml); the ExtensionApp and its
handlers load only when jupyter_server asks for the extension points."""

from __future__ import annotations

from typing import Any

LABEXTENSION_NAME = "nbdeploy"


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where JupyterLab finds the prebuilt sidebar, relative to the ``nbdeploy`` package."""
    return [{"src": "labextension", "dest": LABEXTENSION_NAME}]


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    """The ``nbdeploy`` ExtensionApp jupyter_server loads (its handlers are in app.py)."""
    from nbdeploy.server.app import NbdeployExtension

    return [{"module": "nbdeploy.server", "app": NbdeployExtension}]
