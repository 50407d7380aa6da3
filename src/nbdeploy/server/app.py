"""The ``nbdeploy`` jupyter_server ExtensionApp: the REST API and its thread pools."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from jupyter_server.extension.application import ExtensionApp

from nbdeploy.server.handlers import ServerState, routes

READ_WORKERS = 4
ACTION_WORKERS = 2


def _warm_up() -> None:
    """Import the core once, off the tornado loop (pandas and bentoml take seconds)."""
    import nbdeploy.api  # noqa: F401


class NbdeployExtension(ExtensionApp):
    """Serves /nbdeploy/api/ on a running jupyter_server (enabled on install)."""

    name = "nbdeploy"
    description = "REST API for the nbdeploy Deployments sidebar."
    load_other_extensions = True

    def initialize_settings(self) -> None:
        """The thread pools blocking work runs in, shared by all handlers."""
        reads = ThreadPoolExecutor(READ_WORKERS, thread_name_prefix="nbdeploy-read")
        actions = ThreadPoolExecutor(ACTION_WORKERS, thread_name_prefix="nbdeploy-action")
        self.settings["nbdeploy_state"] = ServerState(reads=reads, actions=actions)
        reads.submit(_warm_up)

    def initialize_handlers(self) -> None:
        """The /nbdeploy/api/ routes (ExtensionApp prefixes the server's base_url)."""
        self.handlers.extend(routes("/"))
        self.log.info("nbdeploy: REST API at %snbdeploy/api/", self.serverapp.base_url)

    async def stop_extension(self) -> None:
        """Let the thread pools go when the server stops."""
        state: ServerState | None = self.settings.get("nbdeploy_state")
        if state is not None:
            state.reads.shutdown(wait=False, cancel_futures=True)
            state.actions.shutdown(wait=False, cancel_futures=True)
