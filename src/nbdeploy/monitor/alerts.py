"""Alert rules over KPIs, live quality and drift, written as short strings.

Accepted forms (spaces optional, an optional ``@v<N>`` limits a rule to one version):
``accuracy<0.9``, ``error_rate>0.05``, ``p99_ms>200``, ``drift`` (any feature drifted) or
``drift>2`` (more than two features drifted). A breach twice as bad as the threshold is
"critical", anything else "warning"; for accuracy "twice as bad" means twice the error rate.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from nbdeploy.monitor.drift import DriftReport

KINDS = {
    "accuracy_below": ("accuracy", "<"),
    "error_rate_above": ("error_rate", ">"),
    "latency_p99_above": ("p99_ms", ">"),
    "drift": ("drift", ">"),
}
FORMS = "accuracy<0.9, error_rate>0.05, p99_ms>200, drift, drift>2 (optionally followed by @v2)"
_PATTERN = re.compile(
    r"^\s*(?P<metric>[a-z0-9_]+)\s*(?:(?P<op>[<>])\s*(?P<value>[0-9]*\.?[0-9]+(?:e-?\d+)?))?"
    r"\s*(?:@\s*v?(?P<version>\d+))?\s*$",
    re.IGNORECASE,
)


class AlertRuleError(ValueError):
    """An alert rule string that cannot be understood."""


@dataclass(frozen=True)
class AlertRule:
    """Fire when ``kind`` crosses ``threshold`` (for one ``version``, or for each one)."""

    kind: str
    threshold: float = 0.0
    version: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise AlertRuleError(f"unknown alert kind {self.kind!r}; use one of {sorted(KINDS)}")

    @classmethod
    def parse(cls, text: str) -> AlertRule:
        """Read a rule such as ``"accuracy<0.9"`` or ``"p99_ms>200@v3"``."""
        match = _PATTERN.match(text or "")
        if match:
            metric, op = match["metric"].lower(), match["op"]
            for kind, (name, want) in KINDS.items():
                if metric != name:
                    continue
                if kind == "drift" and op in (None, ">"):
                    threshold = float(match["value"] or 0)
                elif op == want and match["value"] is not None:
                    threshold = float(match["value"])
                else:
                    break
                version = int(match["version"]) if match["version"] else None
                return cls(kind, threshold, version)
        raise AlertRuleError(f"cannot read alert rule {text!r}; accepted forms: {FORMS}")

    def __str__(self) -> str:
        name, op = KINDS[self.kind]
        text = f"{name}{op}{self.threshold:g}"
        if self.kind == "drift" and self.threshold == 0:
            text = name
        return text + (f"@v{self.version}" if self.version is not None else "")


@dataclass
class Alert:
    """A rule that fired, the value that fired it, and a sentence for humans."""

    rule: AlertRule
    version: int | None
    value: float
    message: str
    severity: str  # "warning" | "critical"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the rule as its string)."""
        out = asdict(self)
        out["rule"] = str(self.rule)
        return out


def parse_rules(rules: str | list[str | AlertRule]) -> list[AlertRule]:
    """Rules from a comma-separated string or a list of strings/rules."""
    items = rules.split(",") if isinstance(rules, str) else rules
    return [r if isinstance(r, AlertRule) else AlertRule.parse(r) for r in items if str(r).strip()]


def _severity(bad: float, limit: float) -> str:
    return "critical" if bad >= 2 * limit else "warning"


def _drift_reports(drift: Any) -> dict[int | None, Any]:
    """Normalise one report (object or dict) or a {version: report} mapping."""
    if drift is None:
        return {}
    if isinstance(drift, DriftReport) or (isinstance(drift, dict) and "verdict" in drift):
        return {None: drift}
    return dict(drift)


def evaluate(
    rules: str | list[str | AlertRule],
    *,
    kpis: dict[int, dict] | None = None,
    live: dict[str, Any] | None = None,
    drift: Any = None,
    min_samples: int = 10,
) -> list[Alert]:
    """Alerts for every rule breached; rules without data, or with < ``min_samples``, stay quiet.

    ``kpis`` comes from ``kpis()``, ``live`` from ``live_metrics()``, ``drift`` is a
    ``DriftReport`` (or its ``to_dict()``), or a ``{version: report}`` mapping.
    """
    alerts: list[Alert] = []
    live_versions = (live or {}).get("versions", {})
    for rule in parse_rules(rules):

        def wanted(version: int | None, rule: AlertRule = rule) -> bool:
            return rule.version is None or version is None or version == rule.version

        if rule.kind == "accuracy_below":
            for version, q in live_versions.items():
                acc = q.get("accuracy")
                if wanted(version) and acc is not None and q.get("n", 0) >= min_samples \
                        and acc < rule.threshold:
                    alerts.append(Alert(rule, version, acc,
                                        f"v{version} live accuracy {acc:.3f} < {rule.threshold:g} "
                                        f"over {q['n']} labelled rows",
                                        _severity(1 - acc, 1 - rule.threshold)))
        elif rule.kind in ("error_rate_above", "latency_p99_above"):
            key = "error_rate" if rule.kind == "error_rate_above" else "p99_ms"
            for version, k in (kpis or {}).items():
                value = k.get(key)
                if wanted(version) and value is not None and k.get("requests", 0) >= min_samples \
                        and value > rule.threshold:
                    label = "error rate" if key == "error_rate" else "p99 latency (ms)"
                    alerts.append(Alert(rule, version, float(value),
                                        f"v{version} {label} {value:.4g} > {rule.threshold:g} "
                                        f"over {k['requests']} requests",
                                        _severity(value, rule.threshold)))
        else:
            for version, report in _drift_reports(drift).items():
                data = report.to_dict() if isinstance(report, DriftReport) else report
                drifted = data.get("drifted") or []
                if wanted(version) and data.get("verdict") == "drift" \
                        and len(drifted) > rule.threshold:
                    where = f"v{version} " if version is not None else ""
                    alerts.append(Alert(rule, version, float(len(drifted)),
                                        f"{where}input drift in {len(drifted)} feature(s): "
                                        f"{', '.join(drifted[:8])}", "warning"))
    return alerts
