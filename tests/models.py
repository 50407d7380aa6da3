"""Small real models on data that ships with scikit-learn, shared by the tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris


def iris() -> tuple[pd.DataFrame, pd.Series]:
    X, y = load_iris(return_X_y=True, as_frame=True)
    return X, y


def cancer() -> tuple[pd.DataFrame, pd.Series]:
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    return X.iloc[:, :8], y


def diabetes() -> tuple[pd.DataFrame, pd.Series]:
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    return X, y


def mixed(n: int = 300, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """Numeric, categorical and nullable columns: a realistic tabular frame."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({
        "age": rng.integers(18, 80, n),
        "income": rng.normal(50_000, 15_000, n).round(2),
        "city": pd.Categorical(rng.choice(["paris", "lyon", "nice"], n)),
        "plan": rng.choice(["basic", "pro"], n),
        "score": pd.array(rng.integers(0, 10, n), dtype="Int64"),
    })
    X.loc[::17, "score"] = pd.NA
    y = ((X["age"] > 40) ^ (X["plan"] == "pro")).astype(int)
    return X, y
