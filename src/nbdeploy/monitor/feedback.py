"""Ground truth sent after the fact, joined to logged predictions for live model quality.

Join rule: one feedback entry gives the truth for one input row of one request, named by
``request_id`` and ``row`` (default 0, the only row of a one-row request). A later entry for
the same (request_id, row) replaces an earlier one. The truth is compared with every logged
answer to that request, so a shadow version is scored on the same traffic as the primary.
A prediction is read from ``outputs[row]``: a scalar, a one-item list, or a dict with a
``prediction``/``label``/``value`` key. Only answers with status < 400 and no error count.
"""

from __future__ import annotations

import math
import os
import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from nbdeploy.monitor.predlog import LockedFile, PredictionLog, dumps_line, read_lines

TASKS = ("classification", "regression")
_KEYS = ("prediction", "label", "value", "y")


class FeedbackError(LookupError):
    """Feedback names a request (or row) the prediction log does not hold."""

    def __init__(self, message: str, request_ids: list[str] | None = None) -> None:
        super().__init__(message)
        self.request_ids = request_ids or []


class FeedbackStore(LockedFile):
    """Append-only ``directory/feedback.jsonl`` of ``{request_id, row, truth, ts}``."""

    def __init__(self, directory: Path | str) -> None:
        super().__init__(directory, ".feedback.lock")

    @property
    def path(self) -> Path:
        """The feedback file."""
        return self.directory / "feedback.jsonl"

    def add(
        self,
        request_id: str,
        truth: Any,
        *,
        row: int = 0,
        ts: float | None = None,
        predlog: PredictionLog | None = None,
    ) -> dict:
        """Record the truth for one row; with ``predlog``, unknown ids raise ``FeedbackError``."""
        return self.add_many([{"request_id": request_id, "truth": truth, "row": row, "ts": ts}],
                             predlog=predlog)[0]

    def add_many(
        self, items: Iterable[dict], *, predlog: PredictionLog | None = None
    ) -> list[dict]:
        """Record several truths at once; nothing is written if any id or row is unknown."""
        entries = []
        for item in items:
            if "request_id" not in item or "truth" not in item:
                raise ValueError(f"feedback needs 'request_id' and 'truth', got {sorted(item)}")
            row = int(item.get("row") or 0)
            if row < 0:
                raise ValueError(f"row must be >= 0, got {row}")
            entries.append({"request_id": str(item["request_id"]), "row": row,
                            "truth": item["truth"], "ts": float(item.get("ts") or time.time())})
        if predlog is not None:
            self._check(entries, predlog)
        data = b"".join(dumps_line(e) for e in entries)
        with self.locked():
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                self.write_all(fd, data)
            finally:
                os.close(fd)
        return entries

    @staticmethod
    def _check(entries: list[dict], predlog: PredictionLog) -> None:
        rows = predlog.row_counts(e["request_id"] for e in entries)
        unknown = sorted({e["request_id"] for e in entries if e["request_id"] not in rows})
        if unknown:
            shown = ", ".join(unknown[:10]) + (" ..." if len(unknown) > 10 else "")
            raise FeedbackError(
                f"no logged prediction has request id {shown}; send feedback with the id the "
                "service returned (X-Request-ID header or 'request_id' field) while its "
                "prediction is still in the log",
                unknown,
            )
        bad = [e for e in entries if e["row"] >= max(rows[e["request_id"]], 1)]
        if bad:
            e = bad[0]
            raise FeedbackError(
                f"request {e['request_id']} has {rows[e['request_id']]} row(s); row {e['row']} "
                "does not exist (rows count from 0)",
                [x["request_id"] for x in bad],
            )

    def read(self, since: float | None = None) -> list[dict]:
        """Feedback entries in the order they arrived."""
        return [e for e in read_lines(self.path) if since is None or e.get("ts", 0) >= since]

    def truths(self) -> dict[tuple[str, int], Any]:
        """(request_id, row) -> truth; the latest entry wins."""
        return {(e["request_id"], int(e.get("row", 0))): e["truth"] for e in self.read()}


def _prediction(output: Any) -> Any:
    if isinstance(output, dict):
        for key in _KEYS:
            if key in output:
                return output[key]
        raise TypeError("no prediction key")
    if isinstance(output, (list, tuple)):
        if len(output) == 1:
            return output[0]
        raise TypeError("several values")
    return output


def _same(truth: Any, pred: Any) -> bool:
    numbers = (int, float, np.number)
    if isinstance(truth, numbers) and isinstance(pred, numbers):
        return float(truth) == float(pred)
    return str(truth) == str(pred)


def _pairs(predlog: PredictionLog, feedback: FeedbackStore, task: str, since: float | None
           ) -> tuple[list[tuple[int, float, float]], dict[str, Any]]:
    """(version, ts, score) per scored row; score = 1/0 if correct or signed error."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    truths = feedback.truths()
    wanted = {rid for rid, _ in truths}
    seen: set[str] = set()
    pairs, unscorable = [], 0
    for rec in predlog.read(since=since):
        rid = rec["request_id"]
        if rid not in wanted:
            continue
        seen.add(rid)
        if rec.get("status", 200) >= 400 or rec.get("error"):
            continue
        for row, output in enumerate(rec.get("outputs") or []):
            if (rid, row) not in truths:
                continue
            truth = truths[(rid, row)]
            try:
                pred = _prediction(output)
                score = (float(_same(truth, pred)) if task == "classification"
                         else float(pred) - float(truth))
            except (TypeError, ValueError):
                unscorable += 1
                continue
            pairs.append((int(rec["version"]), float(rec["ts"]), score))
    unmatched = sorted(wanted - seen)
    info = {"feedback": len(truths), "unmatched": len(unmatched),
            "unmatched_ids": unmatched[:20], "unscorable": unscorable}
    return pairs, info


def _quality(task: str, scores: list[float]) -> dict[str, Any]:
    values = np.asarray(scores, dtype=float)
    if task == "classification":
        return {"n": len(values), "correct": int(values.sum()),
                "accuracy": float(values.mean()) if len(values) else None}
    if not len(values):
        return {"n": 0, "mae": None, "rmse": None, "bias": None}
    return {"n": len(values), "mae": float(np.abs(values).mean()),
            "rmse": float(math.sqrt((values**2).mean())), "bias": float(values.mean())}


def live_metrics(
    predlog: PredictionLog,
    feedback: FeedbackStore,
    *,
    task: str,
    window: float | None = None,
    bucket: float = 3600,
    now: float | None = None,
) -> dict[str, Any]:
    """Live accuracy (or MAE/RMSE/bias) per version, overall and per time bucket.

    Returns ``{"task", "versions": {v: {n, accuracy | mae, rmse, bias, series: [...]}},
    "feedback", "unmatched", "unmatched_ids", "unscorable"}``; ``unmatched`` counts feedback
    whose request is not in the log (or not in the window).
    """
    since = None if window is None else (time.time() if now is None else now) - window
    pairs, info = _pairs(predlog, feedback, task, since)
    by_version: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for version, ts, score in pairs:
        by_version[version].append((ts, score))
    versions = {}
    for version in sorted(by_version):
        items = by_version[version]
        buckets: dict[float, list[float]] = defaultdict(list)
        for ts, score in items:
            buckets[math.floor(ts / bucket) * bucket].append(score)
        series = [{"t": float(t), **_quality(task, buckets[t])} for t in sorted(buckets)]
        versions[version] = {**_quality(task, [s for _, s in items]), "series": series}
    return {"task": task, "window": window, "bucket": bucket, "versions": versions, **info}


def compare_versions(
    predlog: PredictionLog,
    feedback: FeedbackStore,
    *,
    task: str,
    a: int | None = None,
    b: int | None = None,
    window: float | None = None,
    alpha: float = 0.05,
    now: float | None = None,
) -> dict[str, Any]:
    """A/B: is version ``b`` better than ``a``? Two-proportion z-test, or Welch t on |error|.

    ``difference`` is b minus a (accuracy, or MAE where lower is better), with a
    ``1 - alpha`` confidence interval and a two-sided p-value.
    """
    from scipy import stats  # imported here: the router loads this module and needs no scipy

    since = None if window is None else (time.time() if now is None else now) - window
    pairs, _ = _pairs(predlog, feedback, task, since)
    present = sorted({v for v, _, _ in pairs})
    if a is None or b is None:
        if len(present) != 2:
            raise FeedbackError(f"versions with feedback: {present}; pass a= and b= to choose two")
        a, b = present
    sa = np.array([s for v, _, s in pairs if v == a], dtype=float)
    sb = np.array([s for v, _, s in pairs if v == b], dtype=float)
    if len(sa) < 2 or len(sb) < 2:
        raise FeedbackError(
            f"need at least 2 scored rows per version; v{a} has {len(sa)}, v{b} has {len(sb)}"
        )
    z = stats.norm.ppf(1 - alpha / 2)
    if task == "classification":
        pa, pb = sa.mean(), sb.mean()
        diff = pb - pa
        pooled = (sa.sum() + sb.sum()) / (len(sa) + len(sb))
        se0 = math.sqrt(pooled * (1 - pooled) * (1 / len(sa) + 1 / len(sb)))
        p_value = 1.0 if se0 == 0 else float(2 * stats.norm.sf(abs(diff) / se0))
        se = math.sqrt(pa * (1 - pa) / len(sa) + pb * (1 - pb) / len(sb))
        ci = (diff - z * se, diff + z * se)
        metric, test, better = "accuracy", "two-proportion z", diff > 0
        va, vb = float(pa), float(pb)
    else:
        ea, eb = np.abs(sa), np.abs(sb)
        diff = eb.mean() - ea.mean()
        if ea.var() == 0 and eb.var() == 0:  # constant errors: t is undefined
            p_value, ci = (0.0 if diff else 1.0), (diff, diff)
        else:
            result = stats.ttest_ind(eb, ea, equal_var=False)
            p_value = float(result.pvalue)
            ci = tuple(float(x) for x in result.confidence_interval(1 - alpha))
        metric, test, better = "mae", "welch t", diff < 0
        va, vb = float(ea.mean()), float(eb.mean())
    significant = p_value < alpha
    return {
        "metric": metric, "test": test, "a": a, "b": b, "n_a": len(sa), "n_b": len(sb),
        "value_a": va, "value_b": vb, "difference": float(diff),
        "ci": [float(ci[0]), float(ci[1])], "p_value": p_value, "alpha": alpha,
        "significant": significant, "winner": (b if better else a) if significant else None,
    }
