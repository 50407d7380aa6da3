"""Monitoring: prediction log, input drift, feedback and live quality, KPIs, alerts, plots."""

from __future__ import annotations

from nbdeploy.monitor.alerts import Alert, AlertRule, AlertRuleError, evaluate, parse_rules
from nbdeploy.monitor.drift import DriftReport, FeatureDrift, drift_report
from nbdeploy.monitor.feedback import FeedbackError, FeedbackStore, compare_versions, live_metrics
from nbdeploy.monitor.kpis import kpis, timeseries
from nbdeploy.monitor.predlog import META_COLUMNS, PredictionLog, PredictionLogError

__all__ = [
    "META_COLUMNS",
    "Alert",
    "AlertRule",
    "AlertRuleError",
    "DriftReport",
    "FeatureDrift",
    "FeedbackError",
    "FeedbackStore",
    "PredictionLog",
    "PredictionLogError",
    "compare_versions",
    "drift_report",
    "evaluate",
    "kpis",
    "live_metrics",
    "parse_rules",
    "timeseries",
]
