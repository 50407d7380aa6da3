"""The registry: one SQLite file with deployments, versions, validation runs and an
append-only event log. Every front door reads and writes state only through here.

Version numbers are allocated inside ``BEGIN IMMEDIATE`` transactions, so two processes
deploying the same name at once get N and N+1, never the same number and never a gap. A
version row is inserted complete in one transaction, so a crash leaves either nothing or
a whole row."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nbdeploy import config
from nbdeploy.errors import NotFoundError, RegistryBusyError

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS deployments (
    name TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    serving_version INTEGER,
    router_port INTEGER,
    router_pid INTEGER,
    split_json TEXT,
    shadow_version INTEGER,
    settings_json TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS versions (
    name TEXT NOT NULL REFERENCES deployments(name),
    version INTEGER NOT NULL,
    created_at REAL NOT NULL,
    created_by TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    framework TEXT NOT NULL,
    task TEXT NOT NULL,
    model_tag TEXT NOT NULL,
    bento_tag TEXT NOT NULL,
    model_hash TEXT NOT NULL,
    artifact_sha256 TEXT NOT NULL,
    schema_json TEXT NOT NULL,
    pins_json TEXT NOT NULL,
    python_version TEXT NOT NULL,
    lineage_json TEXT NOT NULL DEFAULT '{}',
    validation_json TEXT NOT NULL DEFAULT '{}',
    build_dir TEXT,
    owner_pid INTEGER,
    pid INTEGER,
    host TEXT,
    port INTEGER,
    tls INTEGER NOT NULL DEFAULT 0,
    auth INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS validation_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    role TEXT NOT NULL,
    notebook TEXT NOT NULL,
    output_path TEXT NOT NULL,
    parameters_json TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    metrics_json TEXT NOT NULL,
    duration_s REAL NOT NULL,
    ts REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    user TEXT NOT NULL,
    action TEXT NOT NULL,
    name TEXT,
    version INTEGER,
    notebook TEXT,
    detail_json TEXT NOT NULL DEFAULT '{}'
);
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""

JSON_FIELDS = {
    "schema_json": "schema",
    "pins_json": "pins",
    "lineage_json": "lineage",
    "validation_json": "validation",
    "split_json": "split",
    "settings_json": "settings",
    "detail_json": "detail",
    "parameters_json": "parameters",
    "metrics_json": "metrics",
}
# Version states. "candidate": registered, validation running; "interrupted": its deploy
# process died before deciding; the serving pointer never moves to either.
FINAL_STATES = {"ready", "serving", "rejected", "failed", "retired", "interrupted"}


def _row(row: sqlite3.Row | None) -> dict[str, Any] | None:
    if row is None:
        return None
    out: dict[str, Any] = {}
    for key in row.keys():
        value = row[key]
        if key in JSON_FIELDS:
            out[JSON_FIELDS[key]] = json.loads(value) if value else None
        else:
            out[key] = value
    return out


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Registry:
    """Access to the registry file; cheap to create, safe across processes."""

    def __init__(self, path: Path | str | None = None, *, busy_timeout: float | None = None) -> None:
        self.path = Path(path) if path else config.registry_path()
        self.busy_timeout = config.registry_timeout() if busy_timeout is None else busy_timeout
        with self._connect() as conn:
            conn.executescript(SCHEMA_SQL)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction holding the registry lock (BEGIN IMMEDIATE)."""
        conn = self._connect()
        try:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if "locked" in str(exc) or "busy" in str(exc):
                    raise RegistryBusyError(
                        f"the registry {self.path} has been locked by another process for more "
                        f"than {self.busy_timeout:.0f} s; wait for the other deploy to finish "
                        "(or stop the process holding it) and try again."
                    ) from None
                raise
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()

    def _query(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        conn = self._connect()
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()

    # -- deployments ---------------------------------------------------------------------
    def deployment(self, name: str) -> dict[str, Any]:
        """One deployment row, or NotFoundError naming the known deployments."""
        rows = self._query("SELECT * FROM deployments WHERE name = ?", (name,))
        if not rows:
            known = [r["name"] for r in self._query("SELECT name FROM deployments ORDER BY name")]
            hint = f" Known deployments: {', '.join(known)}." if known else " Nothing is deployed yet."
            raise NotFoundError(f"no deployment named {name!r}.{hint}")
        return _row(rows[0])  # type: ignore[return-value]

    def deployments(self) -> list[dict[str, Any]]:
        """All deployments, by name."""
        return [_row(r) for r in self._query("SELECT * FROM deployments ORDER BY name")]  # type: ignore[misc]

    def update_deployment(self, name: str, **fields: Any) -> None:
        """Set columns of a deployment row (JSON fields by their short names)."""
        self.deployment(name)
        cols, args = self._assignments(fields)
        with self.transaction() as conn:
            conn.execute(f"UPDATE deployments SET {cols} WHERE name = ?", (*args, name))

    def settings(self, name: str) -> dict[str, Any]:
        """A deployment's settings (alert rules, sensitive columns, TLS files, ...)."""
        return dict(self.deployment(name).get("settings") or {})

    def set_setting(self, name: str, key: str, value: Any) -> None:
        """Set one of a deployment's settings, keeping the others (read and write under the
        registry lock, so two settings written at once both stay)."""
        self.deployment(name)
        with self.transaction() as conn:
            row = conn.execute("SELECT settings_json FROM deployments WHERE name = ?", (name,)).fetchone()
            settings = json.loads(row[0] or "{}") or {}
            settings[key] = value
            conn.execute("UPDATE deployments SET settings_json = ? WHERE name = ?",
                         (json.dumps(settings), name))

    # -- versions ------------------------------------------------------------------------
    def add_version(self, name: str, fields: dict[str, Any], *, event: dict[str, Any]) -> int:
        """Allocate the next version number and insert the whole row and its event at once."""
        with self.transaction() as conn:
            if not conn.execute("SELECT 1 FROM deployments WHERE name = ?", (name,)).fetchone():
                conn.execute(
                    "INSERT INTO deployments (name, created_at) VALUES (?, ?)", (name, time.time())
                )
            (last,) = conn.execute(
                "SELECT COALESCE(MAX(version), 0) FROM versions WHERE name = ?", (name,)
            ).fetchone()
            version = int(last) + 1
            data = {"name": name, "version": version, **fields}
            cols, args = self._columns(data)
            conn.execute(
                f"INSERT INTO versions ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                args,
            )
            self._insert_event(conn, version=version, name=name, **event)
        return version

    def version(self, name: str, version: int | None = None) -> dict[str, Any]:
        """A version row; ``None`` means the serving version, else the newest one."""
        dep = self.deployment(name)
        if version is None:
            version = dep["serving_version"]
        if version is None:
            rows = self._query(
                "SELECT * FROM versions WHERE name = ? ORDER BY version DESC LIMIT 1", (name,)
            )
        else:
            rows = self._query(
                "SELECT * FROM versions WHERE name = ? AND version = ?", (name, int(version))
            )
        if not rows:
            known = [str(r["version"]) for r in self._query(
                "SELECT version FROM versions WHERE name = ? ORDER BY version", (name,))]
            raise NotFoundError(
                f"{name} has no version {version}; its versions are: {', '.join(known) or 'none'}."
            )
        return self._reconcile(_row(rows[0]))  # type: ignore[arg-type]

    def versions(self, name: str) -> list[dict[str, Any]]:
        """Every version of a deployment, oldest first."""
        self.deployment(name)
        rows = self._query("SELECT * FROM versions WHERE name = ? ORDER BY version", (name,))
        return [self._reconcile(_row(r)) for r in rows]  # type: ignore[arg-type]

    def find_by_hash(self, name: str, model_hash: str) -> list[dict[str, Any]]:
        """Versions of ``name`` whose model has this content hash, newest first."""
        rows = self._query(
            "SELECT * FROM versions WHERE name = ? AND model_hash = ? ORDER BY version DESC",
            (name, model_hash),
        )
        return [_row(r) for r in rows]  # type: ignore[misc]

    def update_version(self, name: str, version: int, **fields: Any) -> None:
        """Set columns of a version row."""
        cols, args = self._assignments(fields)
        with self.transaction() as conn:
            cur = conn.execute(
                f"UPDATE versions SET {cols} WHERE name = ? AND version = ?", (*args, name, version)
            )
            if cur.rowcount == 0:
                raise NotFoundError(f"{name} has no version {version}.")

    def _reconcile(self, row: dict[str, Any]) -> dict[str, Any]:
        """A candidate whose deploy process died is reported (and stored) as interrupted."""
        if row["status"] == "candidate" and not _pid_alive(row.get("owner_pid")):
            reason = "the deploy process stopped before validation finished; deploy again"
            try:
                self.update_version(row["name"], row["version"], status="interrupted", reason=reason,
                                    pid=None)
            except Exception:
                pass
            from nbdeploy.serve import process  # its side server must not outlive the deploy

            process.stop_pid(row.get("pid"), grace=3)
            process.stop_bento(row["bento_tag"], grace=3)
            row = {**row, "status": "interrupted", "reason": reason}
        return row

    # -- validation runs -----------------------------------------------------------------
    def add_validation_run(self, name: str, version: int, run: dict[str, Any]) -> None:
        """Link one executed validation notebook and its metrics to a version."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO validation_runs (name, version, role, notebook, output_path, "
                "parameters_json, status, reason, metrics_json, duration_s, ts) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    name, version, run.get("role", "candidate"), run["notebook"],
                    run["output_path"], json.dumps(run.get("parameters", {}), default=str),
                    run["status"], run.get("reason"), json.dumps(run.get("metrics", {}), default=str),
                    float(run.get("duration_s", 0.0)), time.time(),
                ),
            )

    def validation_runs(self, name: str, version: int | None = None) -> list[dict[str, Any]]:
        """Validation runs of a deployment (or one version), oldest first."""
        if version is None:
            rows = self._query("SELECT * FROM validation_runs WHERE name = ? ORDER BY id", (name,))
        else:
            rows = self._query(
                "SELECT * FROM validation_runs WHERE name = ? AND version = ? ORDER BY id",
                (name, version),
            )
        return [_row(r) for r in rows]  # type: ignore[misc]

    # -- events --------------------------------------------------------------------------
    def log_event(
        self, action: str, *, name: str | None = None, version: int | None = None,
        notebook: str | None = None, detail: dict[str, Any] | None = None,
    ) -> None:
        """Append one audit event (who, when, what, from which notebook)."""
        with self.transaction() as conn:
            self._insert_event(
                conn, action=action, name=name, version=version, notebook=notebook, detail=detail
            )

    def _insert_event(
        self, conn: sqlite3.Connection, *, action: str, name: str | None = None,
        version: int | None = None, notebook: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        conn.execute(
            "INSERT INTO events (ts, user, action, name, version, notebook, detail_json) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (time.time(), config.user(), action, name, version, notebook,
             json.dumps(detail or {}, default=str)),
        )

    def events(self, name: str | None = None, *, limit: int | None = None) -> list[dict[str, Any]]:
        """Audit events, oldest first (optionally of one deployment, the last ``limit``)."""
        sql, args = "SELECT * FROM events", ()
        if name:
            sql, args = sql + " WHERE name = ?", (name,)
        sql += " ORDER BY id"
        rows = [_row(r) for r in self._query(sql, args)]
        return rows[-limit:] if limit else rows  # type: ignore[return-value]

    # -- helpers -------------------------------------------------------------------------
    @staticmethod
    def _columns(data: dict[str, Any]) -> tuple[list[str], list[Any]]:
        reverse = {v: k for k, v in JSON_FIELDS.items()}
        cols, args = [], []
        for key, value in data.items():
            if key in reverse:
                cols.append(reverse[key])
                args.append(json.dumps(value, default=str) if value is not None else None)
            else:
                cols.append(key)
                args.append(value)
        return cols, args

    def _assignments(self, fields: dict[str, Any]) -> tuple[str, list[Any]]:
        cols, args = self._columns(fields)
        return ", ".join(f"{c} = ?" for c in cols), args
