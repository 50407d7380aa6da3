"""Render the generated ``service.py``: a readable BentoML 1.4 service the user can keep.

The service imports bentoml, pandas, pydantic and the model's framework — never nbdeploy.
Request rows are validated by a pydantic model generated from the schema, so a bad field is
answered 400 with its name before the model sees it."""

from __future__ import annotations

import keyword
import re
from typing import Any

from nbdeploy.capture.frameworks import ModelInfo
from nbdeploy.capture.schema import Column, Schema

MAX_ROWS = 10_000


def _field_name(name: str, taken: set[str]) -> str:
    ident = re.sub(r"\W+", "_", name).strip("_") or "col"
    if ident[0].isdigit() or keyword.iskeyword(ident) or ident.startswith("model_"):
        ident = f"c_{ident}"
    base, i = ident, 1
    while ident in taken:
        i += 1
        ident = f"{base}_{i}"
    taken.add(ident)
    return ident


def _annotation(col: Column) -> str:
    if col.categories is not None:
        base = f"Literal[{', '.join(repr(c) for c in col.categories)}]"
    else:
        base = {"float": "float", "int": "int", "bool": "bool", "str": "str", "datetime": "datetime"}[
            col.kind
        ]
    return f"Optional[{base}]" if col.nullable else base


def _int_bounds(dtype: str) -> tuple[int, int]:
    import numpy as np

    try:
        info = np.iinfo(np.dtype(dtype.lower()))
    except TypeError:
        info = np.iinfo(np.int64)
    return int(info.min), int(info.max)


def _field_line(col: Column, ident: str) -> str:
    args = ["..."]
    if ident != col.name:
        args.append(f"alias={col.name!r}")
    if col.categories is None and col.kind in ("float", "int", "bool"):
        args.append("strict=True")  # no "30" for 30, no true for 1
    annotation = _annotation(col)
    if col.kind == "float" and col.categories is None:
        if col.nullable:  # NaN (or null) marks a missing value; infinity never is one
            annotation = f"Annotated[{annotation}, AfterValidator(not_infinite)]"
        else:
            args.append("allow_inf_nan=False")
    if col.kind == "int" and col.categories is None:
        low, high = _int_bounds(col.dtype)
        args += [f"ge={low}", f"le={high}"]
    return f"    {ident}: {annotation} = Field({', '.join(args)})"


def render_row_model(schema: Schema) -> str:
    """The pydantic ``Row`` class for the schema's columns."""
    taken: set[str] = set()
    lines = [
        "class Row(BaseModel):",
        '    """One input row. Every column is required; unknown columns are refused."""',
        "",
        '    model_config = ConfigDict(extra="forbid", populate_by_name=False)',
        "",
    ]
    lines += [_field_line(col, _field_name(col.name, taken)) for col in schema.columns]
    lines += [
        "",
        "",
        "# Row fields in column order, and the one numpy dtype all columns share (if they do):",
        "# then a batch becomes one typed array instead of a DataFrame cast column by column.",
        "ROW_FIELDS = [next(k for k, f in Row.model_fields.items() if (f.alias or k) == c) for c in COLUMNS]",
        "UNIFORM_DTYPE = frames.uniform_dtype(SCHEMA)",
    ]
    return "\n".join(lines)


def _framework_import(load_import: str) -> str:
    """The framework's import lines for ``__init__``; names they bind are declared global,
    since ``predict`` may use them too (``xgb.DMatrix``)."""
    lines = []
    for line in filter(None, (x.strip() for x in load_import.splitlines())):
        code = line.split("#", 1)[0].strip()
        match = re.fullmatch(r"import ([\w.]+)(?: as (\w+))?", code)
        if match:
            lines.append(f"global {match.group(2) or match.group(1).split('.')[0]}")
        lines.append(line)
    return "\n".join(f"        {line}" for line in lines)


def _predict_expr(info: ModelInfo) -> str:
    if info.framework == "xgboost":
        return (
            "self.model.predict(xgb.DMatrix(X, enable_categorical=True)) if self.is_booster "
            "else self.model.predict(X)"
        )
    if info.framework == "pyfunc":
        return 'self.model.predict(X) if hasattr(self.model, "predict") else self.model(X)'
    return "self.model.predict(X)"


def render_service(
    *,
    name: str,
    class_name: str,
    model_tag: str,
    info: ModelInfo,
    schema: Schema,
    explain: bool = True,
) -> str:
    """The full text of ``service.py``."""
    proba = info.has_proba and bool(info.classes)
    parts: list[str] = [HEADER.format(name=name, model_tag=model_tag)]
    parts.append(render_row_model(schema))
    parts.append(
        SERVICE.format(
            name=name,
            class_name=class_name,
            model_tag=model_tag,
            load_expr=info.load_expr,
            framework_import=_framework_import(info.load_import),
            predict_expr=_predict_expr(info),
            is_booster=_booster_check(info),
            max_rows=MAX_ROWS,
        )
    )
    if proba:
        parts.append(PROBA)
    if explain:  # the same row limit as /predict; a class index the model has (0 if no classes)
        last_class = max(len(info.classes or []) - 1, 0)
        parts.append(EXPLAIN.replace("__MAX_ROWS__", str(MAX_ROWS))
                     .replace("__LAST_CLASS__", str(last_class)))
    parts.append(FOOTER)
    return "\n".join(parts)


def _booster_check(info: ModelInfo) -> str:
    if info.framework == "xgboost":
        return "isinstance(self.model, xgb.Booster)"
    return "False"


def service_context(schema: Schema, info: ModelInfo, extra: dict[str, Any]) -> dict[str, Any]:
    """The ``metadata.json`` written next to service.py."""
    return {
        **extra,
        "schema": schema.to_dict(),
        "framework": info.framework,
        "task": info.task,
        "classes": info.classes,
        "has_proba": bool(info.has_proba and info.classes),
        **info.extra,
    }


HEADER = '''"""{name}: a model deployed from a notebook with nbdeploy.

A plain BentoML 1.4 service. Serve it with `bentoml serve service:ModelService` from this
folder, or `bentoml serve <bento tag>`. Routes:
  POST /predict        {{"rows": [{{column: value, ...}}, ...]}} -> one prediction per row
  POST /predict_proba  (classifiers) -> one {{class: probability}} dict per row
  POST /explain        SHAP contributions per row on the input columns; the body may add
                       "class_index": N to explain class N (default: the predicted class)
  GET  /metadata       name, version, schema, pinned packages, created_at
  GET  /readyz /livez /metrics   health and Prometheus metrics (BentoML built-ins)
Rows are validated against the training schema (the Row class below): a wrong type, a
missing or extra column, an unknown category or a NaN where none was seen is answered 400
with the field named, before the model is called.
"""

from __future__ import annotations

import json
import logging
import os  # noqa: F401  (used by /explain)
import time  # noqa: F401  (used by /explain)
from datetime import datetime  # noqa: F401  (used by datetime columns)
from pathlib import Path
from typing import Annotated, Any, Literal, Optional  # noqa: F401

import bentoml
import pandas as pd  # noqa: F401
from bentoml.exceptions import InvalidArgument, ServiceUnavailable, UnprocessableEntity  # noqa: F401
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

import frames
import guard
import integrity
import v2

HERE = Path(__file__).resolve().parent
METADATA = json.loads((HERE / "metadata.json").read_text())
SCHEMA = METADATA["schema"]
CLASSES = METADATA.get("classes")
COLUMNS = [c["name"] for c in SCHEMA["columns"]]
RUNTIME: dict[str, Any] = {{}}  # the live service instance, for the plain routes below
log = logging.getLogger("bentoml.service")


def not_infinite(value: float | None) -> float | None:
    """Nullable float columns take null or NaN for a missing value, never infinity."""
    if value is not None and value in (float("inf"), float("-inf")):
        raise ValueError("Input should be a finite number or null")
    return value


async def metadata_endpoint(request):
    return JSONResponse(METADATA)


def _rows(records: list[dict[str, Any]]) -> list[Row]:
    return [Row.model_validate(r) for r in records]


# Plain routes next to BentoML's own: /metadata and the Open Inference Protocol (KServe V2).
info_app = Starlette(routes=[
    Route("/metadata", metadata_endpoint, methods=["GET"]),
    *v2.routes(
        name=METADATA["name"], version=METADATA.get("version", ""), columns=COLUMNS,
        schema_columns=SCHEMA["columns"],
        predict=lambda records: RUNTIME["service"].predict_rows(_rows(records)),
        proba=(lambda records: RUNTIME["service"].proba_rows(_rows(records)))
        if METADATA.get("has_proba") else None,
        ready=lambda: "service" in RUNTIME,
    ),
])

'''

SERVICE = '''

@bentoml.asgi_app(info_app, path="/")
@bentoml.service(
    name="{name}",
    logging={{"access": {{"enabled": False}}}},
    traffic={{"timeout": 60}},
)
class {class_name}:
    """Serves the model {model_tag}, validating every row against the training schema."""

    model_ref = bentoml.models.BentoModel("{model_tag}")

    def __init__(self) -> None:
        expected = METADATA.get("artifact_sha256")
        if expected and integrity.artifact_sha256(self.model_ref.path) != expected:
            raise RuntimeError(
                "model artifact sha256 mismatch: the stored model was modified after deploy; "
                "refusing to serve it. Redeploy from the notebook."
            )
        # The framework is imported here, in the worker that loads the model, not at module
        # level: `bentoml serve` imports this module once more just to read its config.
{framework_import}
        self.model = {load_expr}
        self.is_booster = {is_booster}
        self.explainer = None
        RUNTIME["service"] = self

    def _frame(self, rows: list[Row]) -> pd.DataFrame:
        if UNIFORM_DTYPE:
            values = [[getattr(row, field) for field in ROW_FIELDS] for row in rows]
            return frames.matrix_frame(values, SCHEMA, UNIFORM_DTYPE)
        records = [row.model_dump(by_alias=True) for row in rows]
        return frames.rows_to_frame(records, SCHEMA)

    @bentoml.api(batchable=True, max_batch_size=10_000, max_latency_ms=60_000)
    def predict(self, rows: Annotated[list[Row], Field(min_length=1, max_length={max_rows})]) -> list[Any]:
        """One prediction per input row."""
        return self.predict_rows(rows)

    def predict_rows(self, rows: list[Row]) -> list[Any]:
        X = frames.model_input(self._frame(rows), SCHEMA)
        try:
            y = {predict_expr}
        except Exception as exc:  # the model's own error: say what, never a traceback
            log.warning("model.predict failed: %r", exc)
            raise UnprocessableEntity(
                f"the model could not predict these rows: {{type(exc).__name__}}: {{exc}}"
            ) from None
        return frames.to_json(y)
'''

PROBA = '''
    @bentoml.api(batchable=True, max_batch_size=10_000, max_latency_ms=60_000)
    def predict_proba(
        self, rows: Annotated[list[Row], Field(min_length=1, max_length=10_000)]
    ) -> list[dict[str, float]]:
        """One {class: probability} dict per input row."""
        return self.proba_rows(rows)

    def proba_rows(self, rows: list[Row]) -> list[dict[str, float]]:
        X = frames.model_input(self._frame(rows), SCHEMA)
        try:
            proba = self.model.predict_proba(X)
        except Exception as exc:
            log.warning("model.predict_proba failed: %r", exc)
            raise UnprocessableEntity(
                f"the model could not score these rows: {type(exc).__name__}: {exc}"
            ) from None
        return frames.proba_records(proba, CLASSES)
'''

EXPLAIN = '''
    @bentoml.api
    def explain(
        self,
        rows: Annotated[list[Row], Field(min_length=1, max_length=__MAX_ROWS__)],
        # omitted: each row's predicted class; an int, never null (the schema says integer)
        class_index: Annotated[int, Field(ge=0, le=__LAST_CLASS__, strict=True)] = None,
        ctx: bentoml.Context = None,
    ) -> dict[str, Any]:
        """SHAP contributions on the input columns, base value and model output per row.

        Each row explains its predicted class (the positive class if binary) unless
        ``class_index`` names one class for every row. The model-agnostic explainer is
        bounded by NBDEPLOY_EXPLAIN_MAX_SECONDS (default 20 s): a request it would not finish
        in time is answered 503 with the projected time, before the budget is spent."""
        started = time.perf_counter()
        try:
            explainer = self._explainer()
        except Exception as exc:  # e.g. a model with neither probabilities nor scores
            log.warning("no explainer for this model: %r", exc)
            raise UnprocessableEntity(
                f"this model cannot be explained: {type(exc).__name__}: {exc}"
            ) from None
        try:
            explainer.check_class_index(class_index)
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from None
        X = frames.model_input(self._frame(rows), SCHEMA)  # the same input /predict gives the model
        try:
            answer = explainer.explain(X, class_index=class_index)
        except explainer_module().ExplainTimeout as exc:
            log.warning("explain over its time budget: %s", exc)
            message = f"explain time budget exceeded: {exc}"
            if ctx is None:
                raise ServiceUnavailable(message) from None
            # BentoML hides the message of a 5xx exception; this answer must say what happened
            ctx.response.status_code = 503
            return {"error": message}
        except Exception as exc:  # the model's own error: the same answer as /predict's
            log.warning("explain failed: %r", exc)
            raise UnprocessableEntity(
                f"the model could not explain these rows: {type(exc).__name__}: {exc}"
            ) from None
        if ctx is not None:  # server-side time of this answer, for clients and benchmarks
            ctx.response.headers["Server-Timing"] = (
                f"explain;dur={(time.perf_counter() - started) * 1000:.3f}"
            )
        return answer

    def _explainer(self) -> Any:
        """The explainer, built on first use from the reference sample stored in the bento."""
        if self.explainer is None:
            reference = frames.rows_to_frame(
                json.loads((HERE / "reference.json").read_text()), SCHEMA
            )
            budget = float(os.environ.get("NBDEPLOY_EXPLAIN_MAX_SECONDS", "20"))
            self.explainer = explainer_module().make_explainer(
                self.model, reference, max_seconds=budget,
                as_input=lambda frame: frames.model_input(frame, SCHEMA),
            )
        return self.explainer


def explainer_module() -> Any:
    """explainer.py next to this file, imported on first use (it imports shap)."""
    import explainer

    return explainer
'''

FOOTER = """

# Refuse pickle payloads; require NBDEPLOY_API_KEY when the server was started with one.
ModelService.add_asgi_middleware(guard.RequestGuard, extra_paths=v2.openapi_paths(
    name=METADATA["name"], has_proba=bool(METADATA.get("has_proba"))))

# BentoML works out an answer's media type from its JSON schema on every response; it is
# fixed per endpoint, so work it out once.
for _api in ModelService.apis.values():
    if _api.output_spec.media_type is None:
        _api.output_spec.media_type = _api.output_spec.mime_type()
"""
