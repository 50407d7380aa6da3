"""Hand-written prediction logs and feedback for deployments that are not served."""

from __future__ import annotations

import shutil
import time
from typing import Any

import pandas as pd

from nbdeploy.monitor import FeedbackStore, PredictionLog


def reset(name: str) -> PredictionLog:
    """An empty prediction log (and feedback store) for ``name``."""
    log = PredictionLog.for_deployment(name)
    shutil.rmtree(log.directory, ignore_errors=True)
    return PredictionLog.for_deployment(name)


def write(
    name: str,
    frame: pd.DataFrame,
    *,
    version: int = 1,
    outputs: list[Any] | None = None,
    latency_ms: float = 12.0,
    status: int = 200,
    start: float | None = None,
    step: float = 1.0,
    prefix: str = "req",
) -> list[str]:
    """One one-row request per row of ``frame``, ``step`` seconds apart; returns the ids."""
    log = PredictionLog.for_deployment(name)
    start = time.time() - step * len(frame) if start is None else start
    ids = []
    for i, row in enumerate(frame.to_dict(orient="records")):
        rid = f"{prefix}-v{version}-{i}"
        log.append({"request_id": rid, "ts": start + i * step, "version": version,
                    "status": status, "latency_ms": latency_ms + i % 10,
                    "inputs": [row], "outputs": [outputs[i] if outputs is not None else 0]})
        ids.append(rid)
    return ids


def feedback(name: str, ids: list[str], truths: list[Any]) -> None:
    """Send the true label of each request (checked against the log, as /feedback does)."""
    log = PredictionLog.for_deployment(name)
    FeedbackStore(log.directory).add_many(
        [{"request_id": r, "truth": t} for r, t in zip(ids, truths, strict=True)], predlog=log)
