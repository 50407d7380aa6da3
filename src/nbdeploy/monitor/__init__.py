"""Monitoring: prediction log, input drift, feedback and live quality, KPIs, alerts, plots.

Names load on first use, so the router (which only writes the prediction log) starts
without importing scipy or matplotlib. The ``kpis`` function is imported from
``nbdeploy.monitor.kpis``: as a package attribute that name is the submodule once anything
imported it, whatever this module's lazy names say."""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "META_COLUMNS": "predlog",
    "PredictionLog": "predlog",
    "PredictionLogError": "predlog",
    "Alert": "alerts",
    "AlertRule": "alerts",
    "AlertRuleError": "alerts",
    "evaluate": "alerts",
    "parse_rules": "alerts",
    "DriftReport": "drift",
    "FeatureDrift": "drift",
    "drift_report": "drift",
    "FeedbackError": "feedback",
    "FeedbackStore": "feedback",
    "compare_versions": "feedback",
    "live_metrics": "feedback",
    "timeseries": "kpis",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(f"nbdeploy.monitor.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nbdeploy.monitor' has no attribute {name!r}")
