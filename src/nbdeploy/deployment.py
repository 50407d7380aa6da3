"""``Deployment``: a handle on one version of a deployment, read fresh from the registry."""

from __future__ import annotations

import html
from typing import Any

import httpx

from nbdeploy.registry import Registry
from nbdeploy.serve import process


class Deployment:
    """A deployed version: its status, endpoint and a small client for it."""

    def __init__(self, name: str, version: int | None = None) -> None:
        self.name = name
        self._version = version
        self.api_key: str | None = None  # in memory only; never written to the registry

    @property
    def row(self) -> dict[str, Any]:
        """The version's registry row (fresh on every access)."""
        return Registry().version(self.name, self._version)

    @property
    def version(self) -> int:
        return int(self.row["version"])

    @property
    def url(self) -> str | None:
        """Base URL of this version's server (None if it was never started)."""
        row = self.row
        if not row.get("port"):
            return None
        host = row.get("host") or "127.0.0.1"
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        scheme = "https" if row.get("tls") else "http"
        return f"{scheme}://{host}:{row['port']}"

    @property
    def endpoint(self) -> str | None:
        """The stable URL when this is the serving version, else this version's own URL."""
        row = self.row
        dep = Registry().deployment(self.name)
        if dep["serving_version"] == row["version"] and dep.get("router_port"):
            from nbdeploy.serve.endpoint import router_url

            return router_url(dep["router_port"])
        return self.url

    def status(self) -> str:
        """``serving`` when the process lives and answers /readyz; ``down`` when it died;
        otherwise the registry state (ready, rejected, candidate, interrupted …)."""
        row = self.row
        if row.get("pid"):
            if process.alive(row["pid"], marker=row["bento_tag"]):
                if self.url and process.probe(self.url):
                    return "serving"
                return "starting"
            if row["status"] == "serving":
                return "down"
        return "stopped" if row["status"] in ("serving", "ready") else row["status"]

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary for tables, the panel and the REST API."""
        row = self.row
        dep = Registry().deployment(self.name)
        return {
            "name": self.name,
            "version": row["version"],
            "serving_version": dep["serving_version"],
            "status": self.status(),
            "state": row["status"],
            "reason": row.get("reason"),
            "endpoint": self.endpoint,
            "version_url": self.url,
            "framework": row["framework"],
            "task": row["task"],
            "bento_tag": row["bento_tag"],
            "created_at": row["created_at"],
            "created_by": row["created_by"],
            "pid": row.get("pid"),
            "port": row.get("port"),
        }

    # -- client --------------------------------------------------------------------------
    def _post(self, route: str, rows: Any, **extra: Any) -> Any:
        url = self.endpoint if self.status() == "serving" else self.url
        if not url:
            raise RuntimeError(f"{self.name} v{self.version} is not served; call .start() first.")
        records = _records(rows)
        import os

        key = self.api_key or os.environ.get("NBDEPLOY_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        resp = httpx.post(f"{url}/{route}", json={"rows": records, **extra}, timeout=60,
                          headers=headers, verify=False)
        if resp.status_code >= 400:
            raise RuntimeError(f"{route} answered {resp.status_code}: {resp.text[:500]}")
        return resp.json()

    def predict(self, rows: Any) -> list[Any]:
        """Predictions from the live endpoint for a DataFrame or a list of row dicts."""
        return self._post("predict", rows)

    def predict_proba(self, rows: Any) -> list[dict[str, float]]:
        """Class probabilities from the live endpoint."""
        return self._post("predict_proba", rows)

    def explain(self, rows: Any, class_index: int | None = None) -> dict[str, Any]:
        """SHAP contributions from the live endpoint: for each row's predicted class, or for
        class number ``class_index`` of a classifier."""
        extra = {} if class_index is None else {"class_index": int(class_index)}
        return self._post("explain", rows, **extra)

    def stop(self) -> bool:
        """Stop this version's server."""
        from nbdeploy import api

        return api.stop(self.name, self.version)

    def start(self) -> Deployment:
        """Start this version's server again."""
        from nbdeploy import api

        return api.start(self.name, self.version)

    def logs(self, lines: int = 50) -> str:
        """The last lines of the server's log."""
        return process.tail_log(process.log_path(self.name, self.version), lines)

    def __repr__(self) -> str:
        return f"<Deployment {self.name} v{self._version if self._version else '?'}>"

    def _repr_html_(self) -> str:
        s = self.summary()
        url = s["endpoint"] or "—"
        return (
            f"<div><b>{html.escape(self.name)}</b> v{s['version']} "
            f"<span style='padding:1px 6px;border-radius:8px;background:#eee'>{s['status']}</span> "
            f"<code>{html.escape(url)}</code> ({s['framework']}, {s['task']})</div>"
        )


def _records(rows: Any) -> list[dict[str, Any]]:
    import pandas as pd

    from nbdeploy.package.runtime.frames import to_json

    if isinstance(rows, pd.Series):
        rows = rows.to_frame().T
    if isinstance(rows, pd.DataFrame):
        return [{str(k): to_json(v) for k, v in r.items()} for r in rows.to_dict(orient="records")]
    if isinstance(rows, dict):
        return [rows]
    return list(rows)
