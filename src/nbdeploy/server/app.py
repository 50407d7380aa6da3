"""Wire the nbdeploy REST API into a running jupyter_server."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from nbdeploy.server.handlers import ServerState, routes

READ_WORKERS = 4
ACTION_WORKERS = 2


def _warm_up() -> None:
    """Import the core once, off the tornado loop (pandas and bentoml take seconds)."""
    import nbdeploy.api  # noqa: F401


def load(server_app: Any) -> None:
    """Add the handlers and the thread pools they run blocking work in."""
    web_app = server_app.web_app
    reads = ThreadPoolExecutor(READ_WORKERS, thread_name_prefix="nbdeploy-read")
    actions = ThreadPoolExecutor(ACTION_WORKERS, thread_name_prefix="nbdeploy-action")
    web_app.settings["nbdeploy"] = ServerState(reads=reads, actions=actions)
    web_app.add_handlers(".*$", routes(web_app.settings["base_url"]))
    reads.submit(_warm_up)
    server_app.log.info("nbdeploy: REST API at %snbdeploy/api/", web_app.settings["base_url"])
