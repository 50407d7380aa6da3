"""Append-only, size-rotated JSON-lines log of the predictions one deployment served.

One line per answered request (and one more per shadow answer). Writers in several threads
and several processes may share a log: a thread lock plus ``fcntl.flock`` on a lock file that
never rotates make every line land whole, and rotation happen once.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import hashlib
import json
import mmap
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

BASENAME = "predictions.jsonl"
META_COLUMNS = ("request_id", "row", "version", "ts", "shadow")
_FIELDS = ("request_id", "ts", "version", "shadow", "status", "latency_ms", "error")
_POLICIES = ("hash", "drop")
_RECENT = 100_000  # request ids remembered in memory for fast feedback look-ups


class PredictionLogError(RuntimeError):
    """The prediction log cannot be written (the service keeps answering; records are dropped)."""


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (_dt.datetime, _dt.date, pd.Timestamp)):
        return value.isoformat()
    return str(value)


def dumps_line(record: dict) -> bytes:
    """One compact JSON line (newline included), numpy values converted."""
    text = json.dumps(record, separators=(",", ":"), default=_json_default)
    return text.encode() + b"\n"


class LockedFile:
    """Appends whole lines to files of one folder under a thread lock and an ``flock``."""

    def __init__(self, directory: Path | str, lock_name: str) -> None:
        self.directory = Path(directory)
        self._lock_name = lock_name
        self._pid = os.getpid()
        self._thread_lock = threading.Lock()
        self._lock_fd: int | None = None

    def _check_fork(self) -> None:
        # A forked child shares its parent's open file description, hence its flock: reopen.
        if os.getpid() != self._pid:
            self._pid = os.getpid()
            self._thread_lock = threading.Lock()
            self._lock_fd = None
            self._after_fork()

    def _after_fork(self) -> None:
        """Hook for subclasses holding other descriptors."""

    @contextlib.contextmanager
    def locked(self, shared: bool = False) -> Iterator[None]:
        """Hold the thread lock and the cross-process lock (creates the folder if needed)."""
        self._check_fork()
        with self._thread_lock:
            if self._lock_fd is None:
                self.directory.mkdir(parents=True, exist_ok=True)
                lock_path = self.directory / self._lock_name
                self._lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._lock_fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    @staticmethod
    def write_all(fd: int, data: bytes) -> None:
        """Write every byte (``os.write`` may write less than asked)."""
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]


def read_lines(path: Path, size: int | None = None) -> Iterator[dict]:
    """Decoded lines of a JSONL file up to ``size`` bytes, skipping a partial or corrupt line."""
    try:
        with open(path, "rb") as fh:
            data = fh.read() if size is None else fh.read(size)
    except FileNotFoundError:
        return
    lines = data.split(b"\n")
    for line in lines[:-1]:  # the last piece lacks its newline: empty, or still being written
        if line:
            try:
                yield json.loads(line)
            except ValueError:
                continue


class PredictionLog(LockedFile):
    """The prediction log of one deployment: ``directory/predictions.jsonl`` plus ``.1``..``.N``.

    ``sensitive`` maps input columns to ``"hash"`` (salted sha256, salt kept in
    ``directory/.salt`` with mode 0600) or ``"drop"``; such values never reach the disk in clear.
    Disk use stays below about ``max_bytes * (backups + 1)``.
    """

    def __init__(
        self,
        directory: Path | str,
        *,
        max_bytes: int = 20_000_000,
        backups: int = 5,
        sensitive: dict[str, str] | None = None,
    ) -> None:
        super().__init__(directory, ".predictions.lock")
        if max_bytes <= 0 or backups < 0:
            raise ValueError("max_bytes must be > 0 and backups >= 0")
        bad = {k: v for k, v in (sensitive or {}).items() if v not in _POLICIES}
        if bad:
            raise ValueError(f"sensitive columns take 'hash' or 'drop', got {bad}")
        self.max_bytes = max_bytes
        self.backups = backups
        self.sensitive = dict(sensitive or {})
        self.dropped = 0
        self.written = 0
        self.last_error: str | None = None
        self._failing = False
        self._stats_lock = threading.Lock()
        self._fd: int | None = None
        self._salt: bytes | None = None
        self._recent: OrderedDict[str, int] = OrderedDict()

    @classmethod
    def for_deployment(cls, name: str, **options: Any) -> PredictionLog:
        """The log of deployment ``name`` under ``config.logs_dir()/predictions/<name>``."""
        from nbdeploy.config import logs_dir

        return cls(logs_dir() / "predictions" / name, **options)

    @property
    def path(self) -> Path:
        """The file being written now."""
        return self.directory / BASENAME

    def files(self) -> list[Path]:
        """Existing log files, oldest first."""
        names = [self.directory / f"{BASENAME}.{i}" for i in range(self.backups, 0, -1)]
        return [p for p in [*names, self.path] if p.exists()]

    def size_bytes(self) -> int:
        """Bytes used on disk by all log files."""
        return sum(p.stat().st_size for p in self.files())

    def _after_fork(self) -> None:
        self._fd = None
        self._stats_lock = threading.Lock()

    # -- writing ---------------------------------------------------------------------------

    def append(self, record: dict) -> None:
        """Write one prediction record; raises ``PredictionLogError`` on the first failure only.

        Later failures in the same run of failures only increase ``dropped``; a success
        ends the run, so the next failure raises again.
        """
        try:
            line = dumps_line(self._prepare(record))  # may create the salt: an OSError too
            with self.locked():
                self._write(line)
                self._failing = False
                self.written += 1
                self._remember(record["request_id"], len(record.get("inputs") or []))
        except OSError as exc:
            with self._stats_lock:
                self.dropped += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                first, self._failing = not self._failing, True
            if first:
                raise PredictionLogError(
                    f"cannot write the prediction log in {self.directory} ({self.last_error}); "
                    "predictions are being dropped. Make that folder writable or point "
                    "NBDEPLOY_LOG_DIR at a writable folder."
                ) from exc

    def _prepare(self, record: dict) -> dict:
        missing = [k for k in ("request_id", "version") if k not in record]
        if missing:
            raise ValueError(f"a prediction record needs {missing}; got keys {sorted(record)}")
        inputs = record.get("inputs") or []
        if not isinstance(inputs, list) or not all(isinstance(r, dict) for r in inputs):
            raise ValueError("record['inputs'] must be a list of row dicts")
        out: dict[str, Any] = {
            "request_id": str(record["request_id"]),
            "ts": float(record.get("ts") or time.time()),
            "version": int(record["version"]),
            "shadow": bool(record.get("shadow", False)),
            "status": int(record.get("status", 200)),
            "latency_ms": None if record.get("latency_ms") is None else float(record["latency_ms"]),
            "error": record.get("error"),
        }
        out["inputs"] = [self._mask(row) for row in inputs] if self.sensitive else inputs
        out["outputs"] = list(record.get("outputs") or [])
        for key, value in record.items():
            if key not in out:
                out[key] = value
        return out

    def _mask(self, row: dict) -> dict:
        masked = {}
        for key, value in row.items():
            policy = self.sensitive.get(key)
            if policy == "drop":
                continue
            if policy == "hash" and value is not None:
                value = self.hash_value(value)
            masked[key] = value
        return masked

    def _get_salt(self) -> bytes:
        if self._salt is None:
            with self.locked():
                path = self.directory / ".salt"
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                except FileExistsError:
                    self._salt = path.read_bytes().strip()
                else:
                    self._salt = secrets.token_hex(32).encode()
                    with os.fdopen(fd, "wb") as fh:
                        fh.write(self._salt)
                    os.chmod(path, 0o600)
        return self._salt

    def hash_value(self, value: Any) -> str:
        """The digest a ``"hash"`` column stores for ``value`` (to look a row up)."""
        text = json.dumps(value, default=_json_default, sort_keys=True)
        return hashlib.sha256(self._get_salt() + text.encode()).hexdigest()

    def _write(self, line: bytes) -> None:
        fd = self._open_current()
        size = os.fstat(fd).st_size
        if size and size + len(line) > self.max_bytes:
            self._rotate()
            fd = self._open_current()
            size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line  # a writer died mid-line: keep that garbage on its own line
        self.write_all(fd, line)

    def _open_current(self) -> int:
        # Another process may have rotated the file since we opened it: compare inodes.
        try:
            ino = os.stat(self.path).st_ino
        except FileNotFoundError:
            ino = None
        if self._fd is not None and (ino is None or os.fstat(self._fd).st_ino != ino):
            os.close(self._fd)
            self._fd = None
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        return self._fd

    def _rotate(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self.backups == 0:
            os.remove(self.path)
            return
        for i in range(self.backups - 1, 0, -1):
            src = self.directory / f"{BASENAME}.{i}"
            if src.exists():
                os.replace(src, self.directory / f"{BASENAME}.{i + 1}")
        os.replace(self.path, self.directory / f"{BASENAME}.1")

    def _remember(self, request_id: str, rows: int) -> None:
        self._recent[str(request_id)] = max(rows, self._recent.get(str(request_id), 0))
        if len(self._recent) > _RECENT:
            self._recent.popitem(last=False)

    # -- reading ---------------------------------------------------------------------------

    def _snapshot(self) -> list[tuple[Path, int]]:
        """(file, size) pairs, oldest first, taken while no writer rotates."""
        if not self.directory.is_dir():
            return []
        try:
            lock = self.locked(shared=True)
            with lock:
                return [(p, p.stat().st_size) for p in self.files()]
        except OSError:  # read-only folder: read without the lock
            return [(p, p.stat().st_size) for p in self.files()]

    def read(
        self,
        since: float | None = None,
        version: int | None = None,
        limit: int | None = None,
        *,
        shadow: bool | None = None,
    ) -> list[dict]:
        """Records oldest to newest, filtered; ``limit`` keeps the newest ones."""

        def keep(rec: dict) -> bool:
            return (
                (since is None or rec.get("ts", 0) >= since)
                and (version is None or rec.get("version") == version)
                and (shadow is None or bool(rec.get("shadow")) == shadow)
            )

        chunks: list[list[dict]] = []
        found = 0
        for path, size in reversed(self._snapshot()):
            chunk = [rec for rec in read_lines(path, size) if keep(rec)]
            chunks.append(chunk)
            found += len(chunk)
            if limit is not None and found >= limit:
                break
        records = [rec for chunk in reversed(chunks) for rec in chunk]
        if limit is not None:
            records = records[-limit:] if limit > 0 else []
        return records

    def frame(
        self,
        since: float | None = None,
        version: int | None = None,
        limit: int | None = None,
        *,
        shadow: bool | None = None,
        ok_only: bool = True,
        outputs: bool = False,
    ) -> pd.DataFrame:
        """One row per input row, with ``META_COLUMNS`` first (``ok_only``: status < 400).

        ``outputs=True`` adds a ``prediction`` column. ``limit`` counts records, not rows.
        """
        rows = []
        for rec in self.read(since, version, limit, shadow=shadow):
            if ok_only and (rec.get("status", 200) >= 400 or rec.get("error")):
                continue
            preds = rec.get("outputs") or []
            for i, values in enumerate(rec.get("inputs") or []):
                clash = set(values) & {*META_COLUMNS, "prediction"}
                if clash:
                    raise ValueError(
                        f"input columns {sorted(clash)} clash with the log's own columns; "
                        "read the raw records with PredictionLog.read() instead"
                    )
                meta = {"request_id": rec["request_id"], "row": i, "version": rec["version"],
                        "ts": rec["ts"], "shadow": rec.get("shadow", False)}
                if outputs:
                    meta["prediction"] = preds[i] if i < len(preds) else None
                rows.append({**meta, **values})
        if not rows:
            return pd.DataFrame(columns=[*META_COLUMNS, *(["prediction"] if outputs else [])])
        return pd.DataFrame(rows)

    def row_counts(self, request_ids: Iterable[str]) -> dict[str, int]:
        """For each request id present in the log, its number of input rows (unknown ids absent)."""
        wanted = {str(r) for r in request_ids}
        found = {r: self._recent[r] for r in wanted if r in self._recent}
        missing = wanted - set(found)
        if not missing:
            return found
        snapshot = self._snapshot()
        if len(missing) <= 16:
            for rid in missing:
                n = self._scan_one(snapshot, rid)
                if n is not None:
                    found[rid] = n
        else:
            for path, size in snapshot:
                for rec in read_lines(path, size):
                    rid = rec.get("request_id")
                    if rid in missing:
                        found[rid] = max(found.get(rid, 0), len(rec.get("inputs") or []))
        return found

    @staticmethod
    def _scan_one(snapshot: list[tuple[Path, int]], request_id: str) -> int | None:
        # Lines start with {"request_id":<id>, so a byte search finds them without parsing.
        needle = b'{"request_id":' + json.dumps(request_id).encode() + b","
        rows = None
        for path, size in snapshot:
            try:
                with open(path, "rb") as fh:
                    if size == 0:
                        continue
                    with mmap.mmap(fh.fileno(), size, prot=mmap.PROT_READ) as mm:
                        pos = mm.find(needle)
                        while pos != -1:
                            end = mm.find(b"\n", pos)
                            if end != -1 and (pos == 0 or mm[pos - 1] == 0x0A):
                                with contextlib.suppress(ValueError):
                                    n = len(json.loads(mm[pos:end]).get("inputs") or [])
                                    rows = max(rows or 0, n)
                            pos = mm.find(needle, pos + 1)
            except FileNotFoundError:
                continue
        return rows

    def stats(self) -> dict[str, Any]:
        """Counters for health pages: written, dropped, last error, files and bytes on disk."""
        files = self.files() if self.directory.is_dir() else []
        return {
            "directory": str(self.directory),
            "written": self.written,
            "dropped": self.dropped,
            "last_error": self.last_error,
            "files": len(files),
            "bytes": sum(p.stat().st_size for p in files),
        }
