"""The bento's row-to-DataFrame code: the one-array path equals the per-column cast."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from nbdeploy.package.runtime import frames


def _schema(*cols: tuple[str, str, str]) -> dict:
    return {"columns": [{"name": n, "kind": k, "dtype": d} for n, k, d in cols]}


def test_uniform_dtype_only_for_one_plain_numpy_dtype() -> None:
    assert frames.uniform_dtype(_schema(("a", "float", "float64"), ("b c", "float", "float64"))) == "float64"
    assert frames.uniform_dtype(_schema(("a", "int", "int64"), ("b", "int", "int64"))) == "int64"
    assert frames.uniform_dtype(_schema(("a", "float", "float64"), ("b", "int", "int64"))) is None
    assert frames.uniform_dtype(_schema(("a", "int", "Int64"))) is None  # nullable: pandas' own
    assert frames.uniform_dtype(_schema(("a", "category", "category"))) is None
    assert frames.uniform_dtype({"columns": []}) is None


@pytest.mark.parametrize("dtype", ["float64", "float32", "int64", "bool"])
def test_matrix_frame_equals_the_per_column_cast(dtype: str) -> None:
    kind = "float" if "float" in dtype else ("bool" if dtype == "bool" else "int")
    schema = _schema(("mean radius", kind, dtype), ("x", kind, dtype))
    convert = {"float": lambda v: float(v) + 0.5, "bool": bool, "int": int}[kind]
    raw = np.random.default_rng(0).integers(0, 2, size=(5, 2))
    values = [[convert(v) for v in row] for row in raw]
    records = [dict(zip(["mean radius", "x"], row, strict=True)) for row in values]
    fast = frames.matrix_frame(values, schema, dtype)
    pd.testing.assert_frame_equal(fast, frames.rows_to_frame(records, schema))
    assert list(fast.dtypes.astype(str)) == [dtype, dtype]


def test_matrix_frame_reads_none_as_nan_and_keeps_one_row_two_dimensional() -> None:
    schema = _schema(("a", "float", "float64"), ("b", "float", "float64"))
    frame = frames.matrix_frame([[1.5, None]], schema, "float64")
    assert frame.shape == (1, 2) and frame["a"].iloc[0] == 1.5 and math.isnan(frame["b"].iloc[0])
