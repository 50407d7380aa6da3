"""The prediction log: rotation, concurrency, masking of sensitive columns, failures."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
import threading
from pathlib import Path

import pytest

from nbdeploy.monitor.predlog import BASENAME, PredictionLog, PredictionLogError


def record(i: int, *, version: int = 1, writer: str = "w", **extra) -> dict:
    """A plausible one-row prediction record numbered ``i``."""
    return {
        "request_id": f"{writer}-{i}",
        "ts": 1_000_000.0 + i,
        "version": version,
        "inputs": [{"x": float(i), "city": "Lyon"}],
        "outputs": [i % 2],
        "latency_ms": 1.5,
        "status": 200,
        "error": None,
        "shadow": False,
        **extra,
    }


def numbers(records: list[dict], writer: str) -> list[int]:
    """The sequence numbers of one writer's records, in the order given."""
    prefix = writer + "-"
    return [int(r["request_id"][len(prefix):]) for r in records
            if r["request_id"].startswith(prefix)]


def all_lines(directory: Path) -> list[bytes]:
    """Every line of every log file, raw."""
    lines = []
    for path in sorted(directory.glob(BASENAME + "*")):
        lines.extend(path.read_bytes().splitlines())
    return lines


def test_append_read_frame_round_trip(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path / "p")
    log.append(record(0))
    log.append(record(1, version=2, shadow=True))
    log.append({**record(2), "inputs": [{"x": 1.0, "city": "A"}, {"x": 2.0, "city": "B"}],
                "outputs": [0, 1], "status": 503, "error": "boom"})
    got = log.read()
    assert [r["request_id"] for r in got] == ["w-0", "w-1", "w-2"]
    assert got[1] == {**record(1, version=2, shadow=True)}
    assert [r["request_id"] for r in log.read(version=2)] == ["w-1"]
    assert [r["request_id"] for r in log.read(since=1_000_001.0)] == ["w-1", "w-2"]
    assert [r["request_id"] for r in log.read(shadow=False)] == ["w-0", "w-2"]

    frame = log.frame(outputs=True)  # the 503 answer is left out by default
    assert list(frame.columns) == ["request_id", "row", "version", "ts", "shadow", "prediction",
                                   "x", "city"]
    assert frame["x"].tolist() == [0.0, 1.0]
    full = log.frame(ok_only=False)
    assert full["row"].tolist() == [0, 0, 0, 1]
    assert full["city"].tolist() == ["Lyon", "Lyon", "A", "B"]
    assert log.stats()["written"] == 3 and log.stats()["dropped"] == 0


def test_rotation_bounds_disk_and_keeps_newest_in_order(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, max_bytes=2_000, backups=3)
    for i in range(500):
        log.append(record(i))
    files = log.files()
    assert [p.name for p in files] == [f"{BASENAME}.3", f"{BASENAME}.2", f"{BASENAME}.1", BASENAME]
    assert all(p.stat().st_size <= 2_000 for p in files)
    assert log.size_bytes() <= 2_000 * 4
    assert not (tmp_path / f"{BASENAME}.4").exists()

    got = [int(r["request_id"].split("-")[1]) for r in log.read()]
    assert got[-1] == 499
    assert got == list(range(got[0], 500))  # contiguous, oldest first: only the oldest went
    assert len(got) > 30
    assert [r["request_id"] for r in log.read(limit=3)] == ["w-497", "w-498", "w-499"]
    older = log.read(limit=len(got) - 2)
    assert [r["request_id"] for r in older] == [f"w-{i}" for i in got[2:]]


def test_threads_append_without_loss_or_corruption(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, max_bytes=5_000, backups=500)  # rotates, keeps everything

    def writer(name: str) -> None:
        for i in range(150):
            log.append(record(i, writer=name))

    threads = [threading.Thread(target=writer, args=(f"t{k}",)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = all_lines(tmp_path)
    assert len(lines) == 900
    decoded = [json.loads(line) for line in lines]  # every line is whole JSON
    assert {r["request_id"] for r in decoded} == {f"t{k}-{i}" for k in range(6) for i in range(150)}
    assert len(log.files()) > 10
    got = log.read()
    for k in range(6):  # each writer's records come back in the order written
        assert numbers(got, f"t{k}") == list(range(150))


def _child_writer(log: PredictionLog, name: str, n: int) -> None:
    for i in range(n):
        log.append(record(i, writer=name))


def test_processes_append_without_loss_or_corruption(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, max_bytes=20_000, backups=500)
    log.append(record(0, writer="parent0"))  # open descriptors before fork: children must reopen
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_child_writer, args=(log, f"p{k}", 300)) for k in range(2)]
    for p in procs:
        p.start()
    _child_writer(log, "parent", 300)
    for p in procs:
        p.join()
        assert p.exitcode == 0
    lines = all_lines(tmp_path)
    decoded = [json.loads(line) for line in lines]
    ids = [r["request_id"] for r in decoded]
    assert len(ids) == len(set(ids)) == 901
    got = log.read()
    for name in ("p0", "p1", "parent"):
        assert numbers(got, name) == list(range(300))


def test_partial_last_line_is_skipped_and_not_glued(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path)
    log.append(record(0))
    with open(log.path, "ab") as fh:  # a writer killed mid-line
        fh.write(b'{"request_id":"half","ts":1')
    assert [r["request_id"] for r in log.read()] == ["w-0"]
    log.append(record(1))
    assert [r["request_id"] for r in log.read()] == ["w-0", "w-1"]


def test_sensitive_columns_never_reach_disk(tmp_path: Path) -> None:
    directory = tmp_path / "p"
    log = PredictionLog(directory, sensitive={"email": "hash", "ssn": "drop"}, max_bytes=600)
    for i in range(20):
        log.append({**record(i), "inputs": [{"x": i, "email": f"person{i}@example.com",
                                             "ssn": f"123-45-{6000 + i}"}]})
    assert len(log.files()) > 1
    blob = b"".join(p.read_bytes() for p in directory.iterdir() if p.is_file())
    assert b"@example.com" not in blob and b"123-45-" not in blob and b"person" not in blob

    frame = log.frame()
    assert "ssn" not in frame.columns
    hashed = frame.set_index("x")["email"]
    assert hashed[19] == log.hash_value("person19@example.com")
    assert len(hashed[19]) == 64 and hashed[19] != hashed[18]

    salt = directory / ".salt"
    assert stat.S_IMODE(salt.stat().st_mode) == 0o600
    again = PredictionLog(directory, sensitive={"email": "hash"})
    assert again.hash_value("person19@example.com") == hashed[19]  # salt persists per log
    other = PredictionLog(tmp_path / "other", sensitive={"email": "hash"})
    assert other.hash_value("person19@example.com") != hashed[19]  # and differs between logs


def test_unwritable_folder_raises_once_then_counts(tmp_path: Path) -> None:
    # Tests run as root, where chmod does not stop writes: a folder under a regular FILE
    # cannot be created by anyone.
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    log = PredictionLog(blocker / "logs")
    with pytest.raises(PredictionLogError, match="NBDEPLOY_LOG_DIR"):
        log.append(record(0))
    log.append(record(1))
    log.append(record(2))
    assert log.dropped == 3 and log.written == 0
    assert "NotADirectoryError" in log.stats()["last_error"]
    assert log.read() == []

    blocker.unlink()  # the folder becomes possible: writes resume
    log.append(record(3))
    assert [r["request_id"] for r in log.read()] == ["w-3"]
    assert log.written == 1 and log.dropped == 3


def test_row_counts_finds_ids_in_memory_and_on_disk(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, max_bytes=1_500, backups=50)
    for i in range(40):
        rows = [{"x": float(j)} for j in range(1 + i % 3)]
        log.append({**record(i), "inputs": rows, "outputs": [0] * len(rows)})
    assert log.row_counts(["w-5", "nope"]) == {"w-5": 3}
    fresh = PredictionLog(tmp_path, max_bytes=1_500, backups=50)  # nothing in memory: scans
    assert fresh.row_counts(["w-0", "w-4", "w-38", "nope"]) == {"w-0": 1, "w-4": 2, "w-38": 3}
    many = [f"w-{i}" for i in range(40)] + ["x-1"]
    assert fresh.row_counts(many) == {f"w-{i}": 1 + i % 3 for i in range(40)}


def test_bad_records_and_options_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'hash' or 'drop'"):
        PredictionLog(tmp_path, sensitive={"email": "encrypt"})
    log = PredictionLog(tmp_path)
    with pytest.raises(ValueError, match="request_id"):
        log.append({"version": 1})
    with pytest.raises(ValueError, match="list of row dicts"):
        log.append({"request_id": "a", "version": 1, "inputs": [1, 2]})
    assert not log.path.exists() or log.path.stat().st_size == 0


def test_log_files_are_private(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path)
    log.append(record(0))
    assert stat.S_IMODE(os.stat(log.path).st_mode) == 0o600
