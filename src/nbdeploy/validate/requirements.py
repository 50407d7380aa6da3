"""Requirements on recorded metrics (``auc>=0.95``) and champion/challenger comparisons.

Direction: a metric is assumed better when higher, unless its name looks like a loss or
an error, i.e. one of its ``_``/``-``/``.``-separated words (or the whole name) is in
``LOWER_IS_BETTER``: ``rmse``, ``mae``, ``mse``, ``loss``, ``error``, ``logloss``, ``mape``.
So ``val_loss``, ``log_loss`` and ``mean_absolute_error`` are lower-is-better; pass
``higher_is_better`` to say otherwise.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "LOWER_IS_BETTER",
    "Requirement",
    "check",
    "compare",
    "is_higher_better",
    "parse_requirement",
    "parse_requirements",
    "require_better",
]

LOWER_IS_BETTER = frozenset({"rmse", "mae", "mse", "loss", "error", "logloss", "mape"})

_OPS = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
_SPEC = re.compile(r"^\s*(?P<metric>[^<>=!\s]*)\s*(?P<op>>=|<=|==|!=|>|<)\s*(?P<value>.+?)\s*$")


@dataclass(frozen=True)
class Requirement:
    """One condition on one metric, e.g. ``auc >= 0.95``."""

    metric: str
    op: str
    value: float | int | str | bool

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.value}"


def _value(text: str) -> float | int | str | bool:
    raw = text.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return raw[1:-1]
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        return float(raw)
    except ValueError:
        return raw


def parse_requirement(spec: str, metric: str | None = None) -> Requirement:
    """Parse ``"auc>=0.95"``, or ``">=0.95"`` for a given ``metric``."""
    match = _SPEC.match(spec if metric is None else f"{metric}{spec}")
    if not match or not match["metric"]:
        raise ValueError(
            f"cannot read requirement {spec!r}: write metric, operator, value, "
            "e.g. 'auc>=0.95' (operators: >=, >, <=, <, ==, !=)"
        )
    return Requirement(match["metric"], match["op"], _value(match["value"]))


Requirements = Mapping[str, str] | Iterable[str | Requirement]


def parse_requirements(require: Requirements) -> list[Requirement]:
    """A dict ``{"auc": ">=0.95"}`` or strings ``["auc>=0.95"]`` as Requirement objects."""
    if isinstance(require, Mapping):
        return [parse_requirement(str(spec), metric) for metric, spec in require.items()]
    if isinstance(require, str):
        return [parse_requirement(require)]
    return [r if isinstance(r, Requirement) else parse_requirement(r) for r in require]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _holds(actual: Any, req: Requirement) -> str | None:
    """None if ``actual`` meets ``req``, else why not."""
    wanted = req.value
    if req.op in ("==", "!="):
        same = (
            math.isclose(actual, wanted, rel_tol=1e-9, abs_tol=1e-12)
            if _is_number(actual) and _is_number(wanted)
            else actual == wanted
        )
        if same == (req.op == "=="):
            return None
        return f"{req.metric} = {actual!r}, required {req.op} {wanted!r}"
    if not (_is_number(actual) and _is_number(wanted)):
        return f"{req.metric} = {actual!r} cannot be compared with {req.op} {wanted!r}: not numbers"
    if _OPS[req.op](actual, wanted):
        return None
    return f"{req.metric} = {actual:g}, required {req.op} {wanted:g}"


def check(metrics: Mapping[str, Any], require: Requirements) -> list[str]:
    """One human reason per requirement the metrics fail (empty list: all met)."""
    reasons = []
    for req in parse_requirements(require):
        if req.metric not in metrics:
            recorded = ", ".join(sorted(metrics)) or "none"
            reasons.append(
                f"{req.metric} was not recorded (recorded: {recorded}); "
                f"record it with nbdeploy.record({req.metric!r}, value)"
            )
            continue
        why = _holds(metrics[req.metric], req)
        if why:
            reasons.append(why)
    return reasons


def is_higher_better(name: str, overrides: Mapping[str, bool] | None = None) -> bool:
    """Whether a larger value of metric ``name`` is better (see the module docstring)."""
    if overrides and name in overrides:
        return bool(overrides[name])
    lowered = name.lower()
    words = set(re.split(r"[^a-z0-9]+", lowered))
    return not (lowered in LOWER_IS_BETTER or words & LOWER_IS_BETTER)


def compare(
    champion: Mapping[str, Any],
    challenger: Mapping[str, Any],
    higher_is_better: Mapping[str, bool] | None = None,
) -> list[dict[str, Any]]:
    """Per metric: both values, ``delta`` (challenger - champion) and whether it ``improved``."""
    rows = []
    for name in sorted(set(champion) | set(challenger)):
        old, new = champion.get(name), challenger.get(name)
        higher = is_higher_better(name, higher_is_better)
        delta = improved = None
        if _is_number(old) and _is_number(new):
            delta = new - old
            if delta:
                improved = (delta > 0) == higher
        rows.append(
            {
                "metric": name,
                "champion": old,
                "challenger": new,
                "delta": delta,
                "higher_is_better": higher,
                "improved": improved,
            }
        )
    return rows


def require_better(
    champion: Mapping[str, Any],
    challenger: Mapping[str, Any],
    metrics: Iterable[str],
    higher_is_better: Mapping[str, bool] | None = None,
    *,
    tolerance: float = 0.0,
    strict: bool = False,
) -> list[str]:
    """Reasons the challenger is worse than the champion on ``metrics`` (empty list: not worse).

    A tie passes unless ``strict``; ``tolerance`` forgives a loss up to that absolute amount.
    """
    reasons = []
    for name in metrics:
        missing = [
            who for who, m in (("champion", champion), ("challenger", challenger)) if name not in m
        ]
        if missing:
            reasons.append(f"{name} was not recorded for the {' and '.join(missing)}")
            continue
        old, new = champion[name], challenger[name]
        if not (_is_number(old) and _is_number(new)):
            reasons.append(f"{name} cannot be compared: {old!r} vs {new!r} are not numbers")
            continue
        higher = is_higher_better(name, higher_is_better)
        gain = (new - old) if higher else (old - new)
        word = "higher" if higher else "lower"
        if gain < -tolerance:
            reasons.append(
                f"{name}: challenger {new:g} is worse than champion {old:g} ({word} is better)"
            )
        elif strict and gain <= 0:
            reasons.append(
                f"{name}: challenger {new:g} does not beat champion {old:g} ({word} is better)"
            )
    return reasons
