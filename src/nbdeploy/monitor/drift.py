"""Data drift between a reference sample (training data) and live inputs, feature by feature.

Numeric features: PSI over reference-quantile bins (missing values get a bin of their own)
and the two-sample Kolmogorov-Smirnov test. Categorical features (object, string, category,
bool, or listed in ``categorical``): PSI over categories, unseen ones included, and a
chi-square test on the 2 x k table of counts.

Rule: a feature drifts when ``PSI > psi_threshold`` OR the test's ``p < alpha``. The report
says "drift" when any feature drifts, and "insufficient data" when either sample has fewer
than ``min_rows`` rows (no feature is then called drifted). With large samples the tests
flag small shifts; raise ``alpha`` toward 0 or rely on PSI alone (``alpha=0``) if that is noise.
"""

from __future__ import annotations

import html
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

EPSILON = 1e-4  # proportion given to an empty bin so PSI stays finite
DRIFT, NO_DRIFT, INSUFFICIENT = "drift", "no drift", "insufficient data"
_MISSING = "<missing>"


@dataclass
class FeatureDrift:
    """Drift statistics and verdict for one feature."""

    name: str
    kind: str  # "numeric" | "categorical"
    psi: float | None
    test: str  # "ks" | "chi2"
    statistic: float | None
    p_value: float | None
    drifted: bool
    verdict: str
    reason: str
    n_reference: int
    n_current: int


@dataclass
class DriftReport:
    """Per-feature drift and the overall verdict ("drift", "no drift", "insufficient data")."""

    features: list[FeatureDrift]
    drifted: list[str]
    verdict: str
    n_reference: int
    n_current: int
    settings: dict[str, float] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # reference columns absent from current

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN and infinities become None)."""
        out = asdict(self)
        for feat in out["features"]:
            for key, value in feat.items():
                if isinstance(value, float) and not math.isfinite(value):
                    feat[key] = None
        return out

    def to_frame(self) -> pd.DataFrame:
        """One row per feature, drifted first, then by PSI."""
        columns = [f.name for f in FeatureDrift.__dataclass_fields__.values()]
        frame = pd.DataFrame([asdict(f) for f in self.features], columns=columns)
        if frame.empty:
            return frame
        frame["_psi"] = frame["psi"].fillna(-1.0)
        frame = frame.sort_values(["drifted", "_psi"], ascending=False, kind="stable")
        return frame.drop(columns="_psi").reset_index(drop=True)

    def _repr_html_(self) -> str:
        colors = {DRIFT: "#c62828", NO_DRIFT: "#2e7d32", INSUFFICIENT: "#9e6a00"}

        def badge(verdict: str) -> str:
            color = colors.get(verdict, "#555")
            return f'<span style="color:{color};font-weight:bold">{html.escape(verdict)}</span>'

        def num(value: float | None, fmt: str) -> str:
            return "-" if value is None or not math.isfinite(value) else format(value, fmt)

        rows = "".join(
            f"<tr><td>{html.escape(f.name)}</td><td>{f.kind}</td><td>{num(f.psi, '.3f')}</td>"
            f"<td>{f.test}</td><td>{num(f.statistic, '.3f')}</td><td>{num(f.p_value, '.2g')}</td>"
            f"<td>{badge(f.verdict)}</td></tr>"
            for f in (self.features_sorted())
        )
        head = "".join(f"<th>{h}</th>" for h in
                       ("feature", "kind", "PSI", "test", "statistic", "p-value", "verdict"))
        return (
            f"<div><b>Drift:</b> {badge(self.verdict)} — {len(self.drifted)} of "
            f"{len(self.features)} features drifted ({self.n_current} current rows vs "
            f"{self.n_reference} reference rows)<table><tr>{head}</tr>{rows}</table></div>"
        )

    def features_sorted(self) -> list[FeatureDrift]:
        """Features with the drifted ones first, then by decreasing PSI."""
        return sorted(self.features, key=lambda f: (not f.drifted, -(f.psi or 0.0)))


def psi(reference_share: np.ndarray, current_share: np.ndarray) -> float:
    """Population stability index of two proportion vectors over the same bins."""
    ref = np.clip(np.asarray(reference_share, dtype=float), EPSILON, None)
    cur = np.clip(np.asarray(current_share, dtype=float), EPSILON, None)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def _shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total else np.zeros_like(counts, dtype=float)


def _is_categorical(series: pd.Series) -> bool:
    return pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series)


def _numeric(ref: pd.Series, cur: pd.Series, bins: int) -> tuple[float, float, float]:
    """PSI, KS statistic, KS p-value for a numeric feature."""
    cur = pd.to_numeric(cur, errors="coerce")  # text where numbers were expected counts as missing
    ref_values = ref.dropna().to_numpy(dtype=float)
    cur_values = cur.dropna().to_numpy(dtype=float)
    uniques = np.unique(ref_values)
    if len(uniques) == 0:
        ref_idx, cur_idx, size = np.zeros(0, int), np.zeros(len(cur_values), int), 1
    elif len(uniques) <= bins:  # few distinct values: one bin each, plus one for unseen values
        ref_idx = np.searchsorted(uniques, ref_values)
        pos = np.minimum(np.searchsorted(uniques, cur_values), len(uniques) - 1)
        cur_idx = np.where(uniques[pos] == cur_values, pos, len(uniques))
        size = len(uniques) + 1
    else:
        cuts = np.unique(np.quantile(ref_values, np.linspace(0, 1, bins + 1)[1:-1]))
        ref_idx = np.searchsorted(cuts, ref_values, side="right")
        cur_idx = np.searchsorted(cuts, cur_values, side="right")
        size = len(cuts) + 1
    ref_counts = np.append(np.bincount(ref_idx, minlength=size), ref.isna().sum())
    cur_counts = np.append(np.bincount(cur_idx, minlength=size), cur.isna().sum())
    value = psi(_shares(ref_counts), _shares(cur_counts))
    if len(ref_values) and len(cur_values):
        result = stats.ks_2samp(ref_values, cur_values)
        return value, float(result.statistic), float(result.pvalue)
    return value, math.nan, math.nan


def _labels(series: pd.Series) -> pd.Series:
    """Categories as text; 1.0 and 1 are one category, missing values one more."""

    def label(value: Any) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return _MISSING
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)

    return series.astype(object).map(label)


def _categorical(ref: pd.Series, cur: pd.Series) -> tuple[float, float, float]:
    """PSI, chi-square statistic and p-value for a categorical feature."""
    ref_counts = _labels(ref).value_counts()
    cur_counts = _labels(cur).value_counts()
    categories = sorted(set(ref_counts.index) | set(cur_counts.index))
    table = np.array([
        [ref_counts.get(c, 0) for c in categories],
        [cur_counts.get(c, 0) for c in categories],
    ], dtype=float)
    value = psi(_shares(table[0]), _shares(table[1]))
    if len(categories) < 2 or table[1].sum() == 0 or table[0].sum() == 0:
        return value, 0.0, 1.0
    chi2, p_value, _, _ = stats.chi2_contingency(table, correction=False)
    return value, float(chi2), float(p_value)


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    categorical: list[str] | None = None,
    psi_threshold: float = 0.2,
    ks_alpha: float = 0.01,
    chi2_alpha: float = 0.01,
    min_rows: int = 30,
    bins: int = 10,
    columns: list[str] | None = None,
) -> DriftReport:
    """Compare ``current`` to ``reference`` on their shared columns (or ``columns``)."""
    categorical = list(categorical or [])
    wanted = list(columns) if columns is not None else list(reference.columns)
    unknown = [c for c in wanted if c not in reference.columns]
    if unknown:
        raise KeyError(f"columns {unknown} are not in the reference sample")
    missing = [c for c in wanted if c not in current.columns]
    enough = len(current) >= min_rows and len(reference) >= min_rows
    features = []
    for name in (c for c in wanted if c in current.columns):
        ref, cur = reference[name], current[name]
        if name in categorical or _is_categorical(ref):
            kind, test, alpha = "categorical", "chi2", chi2_alpha
            value, statistic, p_value = _categorical(ref, cur)
        else:
            kind, test, alpha = "numeric", "ks", ks_alpha
            value, statistic, p_value = _numeric(ref, cur, bins)
        reasons = []
        if value > psi_threshold:
            reasons.append(f"PSI {value:.3f} > {psi_threshold}")
        if not math.isnan(p_value) and p_value < alpha:
            reasons.append(f"{test} p={p_value:.2g} < {alpha}")
        drifted = enough and bool(reasons)
        if not enough:
            verdict, reason = INSUFFICIENT, f"fewer than {min_rows} rows"
        else:
            verdict = DRIFT if drifted else NO_DRIFT
            reason = "; ".join(reasons) or "within thresholds"
        features.append(FeatureDrift(
            name=str(name), kind=kind, psi=value, test=test,
            statistic=None if math.isnan(statistic) else statistic,
            p_value=None if math.isnan(p_value) else p_value,
            drifted=drifted, verdict=verdict, reason=reason,
            n_reference=int(ref.notna().sum()), n_current=int(cur.notna().sum()),
        ))
    drifted_names = [f.name for f in features if f.drifted]
    if not enough:
        verdict = INSUFFICIENT
    else:
        verdict = DRIFT if drifted_names else NO_DRIFT
    settings = {"psi_threshold": psi_threshold, "ks_alpha": ks_alpha,
                "chi2_alpha": chi2_alpha, "min_rows": min_rows, "bins": bins}
    return DriftReport(features=features, drifted=drifted_names, verdict=verdict,
                       n_reference=len(reference), n_current=len(current),
                       settings=settings, missing=missing)
