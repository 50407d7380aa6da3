"""Tornado handlers for /nbdeploy/api/: JSON in, JSON out, every one authenticated.

GET  deployments                      every deployment: status, endpoint, split, alert state
GET  deployments/NAME                 summary, versions (lineage, validation, reproduce), events
GET  deployments/NAME/versions        the versions alone;  .../status  the serving version's
GET  deployments/NAME/split|kpis|drift|alerts
POST deployments/NAME/start|stop|promote|rollback  {"version": N}  (promote needs it)
POST deployments/NAME/split           {"weights": {"1": 90, "2": 10}}

Errors are JSON ``{"error": message, "field": name}``: 400 bad input (naming the field),
404 unknown deployment or version, 409 a state conflict or an action already running,
501 a feature this nbdeploy lacks. Blocking work runs in the server's thread pools."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import tornado.web
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado.ioloop import IOLoop

from nbdeploy.errors import (
    NbdeployError,
    NotFoundError,
    RegistryBusyError,
    ServeError,
    TamperedArtifactError,
)
from nbdeploy.server import inputs, views

ACTIONS = ("start", "stop", "promote", "rollback")
READS = ("versions", "status", "split", "kpis", "drift", "alerts")
NAME = r"(?P<name>[^/]+)"


@dataclass
class ServerState:
    """Thread pools and in-flight actions, shared by all handlers of one server."""

    reads: Executor
    actions: Executor
    running: dict[str, str] = field(default_factory=dict)


def status_for(exc: NbdeployError) -> int:
    """The HTTP status an nbdeploy error is answered with."""
    if isinstance(exc, views.Unavailable):
        return 501
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, (views.Conflict, TamperedArtifactError)):
        return 409
    if isinstance(exc, RegistryBusyError):
        return 503
    if isinstance(exc, ServeError):
        return 502
    return 400


class NbdeployHandler(APIHandler):
    """Shared plumbing: JSON answers, error mapping and running work off the loop."""

    @property
    def state(self) -> ServerState:
        return self.settings["nbdeploy_state"]

    def answer(self, payload: Any, status: int = 200) -> None:
        """Finish with a JSON body."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(payload, default=str))

    def fail(self, status: int, message: str, field_name: str | None = None) -> None:
        """Finish with ``{"error": message, "field": field_name}``."""
        payload: dict[str, Any] = {"error": message}
        if field_name:
            payload["field"] = field_name
        self.answer(payload, status)

    async def respond(self, func: Callable[..., Any], *args: Any, heavy: bool = False) -> None:
        """Run ``func(*args)`` in a thread pool and answer its result or its error."""
        pool = self.state.actions if heavy else self.state.reads
        try:
            result = await IOLoop.current().run_in_executor(pool, func, *args)
        except inputs.BadInput as exc:
            self.fail(400, str(exc), exc.field)
        except NbdeployError as exc:
            self.fail(status_for(exc), str(exc))
        else:
            self.answer(result)

    def body(self, allowed: set[str]) -> dict[str, Any] | None:
        """The request's JSON object, or None after answering 400."""
        try:
            return inputs.parse_body(self.request.body, allowed)
        except inputs.BadInput as exc:
            self.fail(400, str(exc), exc.field)
            return None


class DeploymentsHandler(NbdeployHandler):
    """GET /nbdeploy/api/deployments: every deployment with its live status."""

    @tornado.web.authenticated
    async def get(self) -> None:
        await self.respond(lambda: {"deployments": views.list_deployments()})


class DeploymentHandler(NbdeployHandler):
    """GET /nbdeploy/api/deployments/{name}: versions, lineage, validation, events."""

    @tornado.web.authenticated
    async def get(self, name: str) -> None:
        await self.respond(views.deployment_detail, name)


class PartHandler(NbdeployHandler):
    """GET /nbdeploy/api/deployments/{name}/(versions|status): one part of the detail."""

    @tornado.web.authenticated
    async def get(self, name: str, part: str) -> None:
        await self.respond(views.versions if part == "versions" else views.status, name)


class ActionHandler(NbdeployHandler):
    """POST /nbdeploy/api/deployments/{name}/(start|stop|promote|rollback) {"version": N}."""

    @tornado.web.authenticated
    async def post(self, name: str, action: str) -> None:
        data = self.body({"version"})
        if data is None:
            return
        try:
            version = inputs.version_field(data, required=action == "promote")
        except inputs.BadInput as exc:
            self.fail(400, str(exc), exc.field)
            return
        running = self.state.running
        if name in running:
            self.fail(409, f"{running[name]} of {name} is still running; wait for it to finish.")
            return
        running[name] = action
        try:
            await self.respond(views.run_action, name, action, version, heavy=True)
        finally:
            running.pop(name, None)


class SplitHandler(NbdeployHandler):
    """GET/POST /nbdeploy/api/deployments/{name}/split {"weights": {"3": 90, "4": 10}}."""

    @tornado.web.authenticated
    async def get(self, name: str) -> None:
        await self.respond(views.get_split, name)

    @tornado.web.authenticated
    async def post(self, name: str) -> None:
        data = self.body({"weights"})
        if data is None:
            return
        try:
            weights = inputs.weights_field(data)
        except inputs.BadInput as exc:
            self.fail(400, str(exc), exc.field)
            return
        await self.respond(views.set_split, name, weights, heavy=True)


class MonitorHandler(NbdeployHandler):
    """GET /nbdeploy/api/deployments/{name}/(kpis|drift|alerts)."""

    @tornado.web.authenticated
    async def get(self, name: str, what: str) -> None:
        await self.respond(views.monitor, name, what)


class NotFoundHandler(NbdeployHandler):
    """Any other path under /nbdeploy/api/: a JSON 404 listing the endpoints."""

    @tornado.web.authenticated
    def get(self, path: str) -> None:
        self.fail(404, f"no endpoint /nbdeploy/api/{path}; see deployments, deployments/NAME, "
                       f"deployments/NAME/({'|'.join(READS + ACTIONS)}).", "path")

    post = get


def routes(base_url: str = "/") -> list[tuple[str, type[NbdeployHandler]]]:
    """URL patterns of the REST API under ``base_url``."""
    root = url_path_join(base_url, "nbdeploy", "api")
    return [
        (url_path_join(root, "deployments") + "/?", DeploymentsHandler),
        (url_path_join(root, "deployments", NAME) + "/?", DeploymentHandler),
        (url_path_join(root, "deployments", NAME, f"(?P<action>{'|'.join(ACTIONS)})"),
         ActionHandler),
        (url_path_join(root, "deployments", NAME, "(?P<part>versions|status)"), PartHandler),
        (url_path_join(root, "deployments", NAME, "split"), SplitHandler),
        (url_path_join(root, "deployments", NAME, "(?P<what>kpis|drift|alerts)"), MonitorHandler),
        (url_path_join(root, "(?P<path>.*)"), NotFoundHandler),
    ]
