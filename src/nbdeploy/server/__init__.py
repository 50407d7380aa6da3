"""jupyter_server extension: the REST API behind the JupyterLab Deployments sidebar.

Importing this package is cheap (no tornado, pandas or bentoml); the handlers load only
when jupyter_server calls :func:`_load_jupyter_server_extension`."""

from __future__ import annotations

from typing import Any

LABEXTENSION_NAME = "nbdeploy"


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where JupyterLab finds the prebuilt sidebar, relative to the ``nbdeploy`` package."""
    return [{"src": "labextension", "dest": LABEXTENSION_NAME}]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """The module jupyter_server loads for the ``nbdeploy`` extension."""
    return [{"module": "nbdeploy.server"}]


def _load_jupyter_server_extension(server_app: Any) -> None:
    """Register the /nbdeploy/api routes on a running jupyter_server."""
    from nbdeploy.server.app import load

    load(server_app)
