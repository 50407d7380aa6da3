"""Input schema from a sample: column names, dtypes, categories and NaN policy.

The schema drives request validation in the generated service and the drift monitor, so a
deployment without one is refused rather than served blind."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from nbdeploy.errors import SchemaError
from nbdeploy.package.runtime import frames

HOW_TO = (
    "Pass sample=X_train (a pandas DataFrame, a numpy array or a list of row dicts with the "
    "columns the model was trained on), e.g. nbdeploy.deploy(model, name='iris', sample=X_train) "
    "or %deploy model --sample X_train."
)


@dataclass
class Column:
    """One input column: its name, kind, pandas dtype, categories and null policy."""

    name: str
    kind: str  # float | int | bool | str | category | datetime
    dtype: str
    nullable: bool = False
    categories: list[Any] | None = None
    ordered: bool = False


@dataclass
class Schema:
    """The input contract of a deployed model."""

    columns: list[Column] = field(default_factory=list)
    input_kind: str = "dataframe"  # "dataframe" or "array" (model was fitted on a numpy array)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def to_dict(self) -> dict[str, Any]:
        return {"input_kind": self.input_kind, "columns": [asdict(c) for c in self.columns]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Schema:
        return cls(
            columns=[Column(**c) for c in data["columns"]],
            input_kind=data.get("input_kind", "dataframe"),
        )

    def to_frame(self, rows: list[dict[str, Any]]) -> pd.DataFrame:
        """Build a DataFrame with the training dtypes from validated row dicts."""
        df = pd.DataFrame(rows, columns=self.names)
        return cast_frame(df, self)

    def _repr_html_(self) -> str:
        head = "<tr><th>column</th><th>type</th><th>nulls</th><th>allowed values</th></tr>"
        body = "".join(
            f"<tr><td><code>{c.name}</code></td><td>{c.dtype}</td>"
            f"<td>{'allowed' if c.nullable else 'refused'}</td>"
            f"<td>{_short(c.categories) if c.categories else ''}</td></tr>"
            for c in self.columns
        )
        return f"<table>{head}{body}</table>"


def _short(values: list[Any], n: int = 8) -> str:
    text = ", ".join(map(str, values[:n]))
    return text + (f", … ({len(values)} in all)" if len(values) > n else "")


def cast_frame(df: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """Cast columns to the dtypes seen at training time (same code the service runs)."""
    return frames.cast_frame(df, schema.to_dict()["columns"])


def _kind(series: pd.Series) -> str:
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return "category"
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        return "int"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    if pd.api.types.is_string_dtype(dtype) or dtype is object or str(dtype) == "object":
        values = series.dropna()
        if len(values) and not all(isinstance(v, str) for v in values):
            raise SchemaError(
                f"column {series.name!r} mixes types ({sorted({type(v).__name__ for v in values})}); "
                "give it one type (e.g. X[col].astype(str)) before deploying."
            )
        return "str"
    raise SchemaError(f"column {series.name!r} has dtype {dtype}, which cannot be served as JSON.")


def _plain(value: Any) -> Any:
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def infer_schema(
    sample: Any,
    *,
    allow_nan: bool | list[str] | None = None,
    categorical: list[str] | None = None,
    max_categories: int = 50,
) -> Schema:
    """Infer the input schema from ``sample``.

    NaN is allowed in a column when the sample has missing values there, its dtype is a
    pandas nullable one, or ``allow_nan`` says so (True for all, or a list of columns).
    String columns listed in ``categorical``, or with at most ``max_categories`` distinct
    values that repeat (at most half as many as rows), only accept the values seen in the
    sample; other string columns accept any string."""
    frame, kind = sample_frame(sample)
    if frame.shape[1] == 0:
        raise SchemaError(f"the sample has no columns. {HOW_TO}")
    if frame.shape[0] == 0:
        raise SchemaError(f"the sample has no rows, so no types can be read from it. {HOW_TO}")
    if len(set(map(str, frame.columns))) != frame.shape[1]:
        raise SchemaError("the sample has duplicate column names; rename them before deploying.")
    categorical = list(categorical or [])
    unknown = [c for c in categorical if c not in frame.columns]
    if unknown:
        raise SchemaError(f"categorical={unknown} are not columns of the sample ({list(frame.columns)}).")
    columns = []
    for name in frame.columns:
        s = frame[name]
        k = _kind(s)
        extension = isinstance(s.dtype, pd.api.extensions.ExtensionDtype) and k != "category"
        nullable = bool(s.isna().any()) or extension
        if allow_nan is True or (isinstance(allow_nan, list) and name in allow_nan):
            nullable = True
        cats, ordered = None, False
        if k == "category":
            cats = [_plain(v) for v in s.cat.categories]
            ordered = bool(s.cat.ordered)
            nullable = nullable or bool(s.isna().any())
        elif k == "str" and (name in categorical or _looks_categorical(s, max_categories)):
            cats = sorted(str(v) for v in s.dropna().unique())
        if k == "float" and not (allow_nan is True or (isinstance(allow_nan, list) and name in allow_nan)):
            nullable = bool(s.isna().any())
        columns.append(Column(str(name), k, str(s.dtype), nullable, cats, ordered))
    return Schema(columns=columns, input_kind=kind)


def _looks_categorical(s: pd.Series, max_categories: int) -> bool:
    """Few distinct values that repeat: a closed set. All-distinct strings (ids, emails) are free text."""
    distinct, present = s.nunique(dropna=True), int(s.notna().sum())
    return distinct <= max_categories and distinct <= present / 2


def sample_frame(sample: Any) -> tuple[pd.DataFrame, str]:
    """Turn a DataFrame, numpy array or list of dicts into a DataFrame (and say which it was)."""
    if sample is None:
        raise SchemaError(f"no sample given: nbdeploy needs one to learn the input schema. {HOW_TO}")
    if isinstance(sample, pd.DataFrame):
        return sample, "dataframe"
    if isinstance(sample, pd.Series):
        return sample.to_frame(), "dataframe"
    if isinstance(sample, np.ndarray):
        if sample.ndim == 1:
            sample = sample.reshape(-1, 1)
        if sample.ndim != 2:
            raise SchemaError(
                f"the sample array has {sample.ndim} dimensions; give a 2-D (rows x features) array."
            )
        return pd.DataFrame(sample, columns=[f"x{i}" for i in range(sample.shape[1])]), "array"
    if isinstance(sample, list) and sample and all(isinstance(r, dict) for r in sample):
        return pd.DataFrame(sample), "dataframe"
    raise SchemaError(f"cannot read a schema from a {type(sample).__name__}. {HOW_TO}")


def reference_sample(sample: Any, *, n: int = 300, seed: int = 0) -> pd.DataFrame:
    """A few hundred rows of the sample, kept with the version for explanations and drift."""
    frame, _ = sample_frame(sample)
    if len(frame) > n:
        frame = frame.sample(n=n, random_state=seed)
    return frame.reset_index(drop=True)
