"""Rows to a typed DataFrame and predictions to JSON — shipped inside every nbdeploy bento.

Standalone on purpose: it imports only numpy and pandas, so the service stays portable."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd


def cast_frame(df: pd.DataFrame, columns: list[dict[str, Any]]) -> pd.DataFrame:
    """Cast columns to the dtypes seen at training time (categories keep their order)."""
    out = {}
    for col in columns:
        s = df[col["name"]]
        kind = col["kind"]
        if kind == "category":
            s = pd.Series(
                pd.Categorical(s, categories=col["categories"], ordered=col.get("ordered", False)),
                index=df.index,
            )
        elif kind == "datetime":
            s = pd.to_datetime(s)
        else:
            try:
                s = s.astype(col["dtype"])
            except (TypeError, ValueError):
                if kind in ("float", "int"):
                    s = s.astype("float64")
        out[col["name"]] = s
    return pd.DataFrame(out, index=df.index)


def rows_to_frame(rows: list[dict[str, Any]], schema: dict[str, Any]) -> pd.DataFrame:
    """Validated row dicts to a DataFrame with the training column order and dtypes."""
    columns = schema["columns"]
    df = pd.DataFrame(rows, columns=[c["name"] for c in columns])
    return cast_frame(df, columns)


def uniform_dtype(schema: dict[str, Any]) -> str | None:
    """The one plain numpy dtype of every column (e.g. all ``float64``), else None.

    Such a schema needs no per-column cast: the rows become one typed 2-D array."""
    columns = schema["columns"]
    dtypes = {str(c["dtype"]) for c in columns}
    if not columns or len(dtypes) != 1 or any(c["kind"] not in ("float", "int", "bool") for c in columns):
        return None
    dtype = dtypes.pop()
    try:
        np.dtype(dtype)  # pandas extension dtypes (Int64, Float64, boolean) are not numpy's
    except TypeError:
        return None
    return dtype


def matrix_frame(values: list[list[Any]], schema: dict[str, Any], dtype: str) -> pd.DataFrame:
    """Rows of values in column order (None for a missing float) to the training DataFrame."""
    names = [c["name"] for c in schema["columns"]]
    return pd.DataFrame(np.array(values, dtype=dtype).reshape(len(values), len(names)), columns=names)


def model_input(df: pd.DataFrame, schema: dict[str, Any]) -> Any:
    """What the model was fitted on: the DataFrame, or a numpy array for array-trained models."""
    return df.to_numpy() if schema.get("input_kind") == "array" else df


def to_json(value: Any) -> Any:
    """Numpy/pandas results to plain JSON values (NaN and inf become None)."""
    if isinstance(value, (pd.DataFrame, pd.Series)):
        value = value.to_numpy()
    if isinstance(value, np.ndarray):
        return [to_json(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def proba_records(proba: Any, classes: list[Any]) -> list[dict[str, float]]:
    """Class probabilities as one ``{class: probability}`` dict per row."""
    arr = np.asarray(proba, dtype=float)
    if arr.ndim == 1:  # binary boosters give P(class 1) only
        arr = np.column_stack([1.0 - arr, arr])
    return [{str(c): float(p) for c, p in zip(classes, row, strict=False)} for row in arr]
