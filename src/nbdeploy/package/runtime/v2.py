"""Open Inference Protocol (KServe V2) routes, shipped inside every nbdeploy bento.

Tabular inputs travel one tensor per column (name = column, shape [n]), or as a single 2-D
tensor [n, columns] in schema order. Every row is validated like ``/predict`` before the
model sees it; errors are ``{"error": ...}`` with a 4xx status."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

DATATYPES = {"bool": "BOOL", "int": "INT64", "float": "FP64", "str": "BYTES"}


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _datatype(values: list[Any]) -> str:
    sample = next((v for v in values if v is not None), 0.0)
    if isinstance(sample, bool):
        return "BOOL"
    if isinstance(sample, int):
        return "INT64"
    if isinstance(sample, float):
        return "FP64"
    return "BYTES"


def _rows(body: Any, columns: list[str]) -> list[dict[str, Any]]:
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list) or not body["inputs"]:
        raise ValueError("the body must be an object with a non-empty 'inputs' list of tensors")
    tensors = body["inputs"]
    for i, t in enumerate(tensors):
        if not isinstance(t, dict) or "name" not in t or "data" not in t or not isinstance(t["data"], list):
            raise ValueError(
                f"inputs[{i}] must be an object with 'name', 'shape', 'datatype' and a 'data' list"
            )
    if len(tensors) == 1 and tensors[0]["name"] not in columns:
        t = tensors[0]
        shape = t.get("shape") or []
        if len(shape) != 2 or shape[1] != len(columns):
            raise ValueError(f"inputs[0] '{t['name']}' is not a column; a single tensor must have shape "
                             f"[rows, {len(columns)}] with columns in this order: {columns}")
        flat = t["data"]
        if flat and isinstance(flat[0], list):
            flat = [v for row in flat for v in row]
        if len(flat) != shape[0] * shape[1]:
            raise ValueError(f"inputs[0] has {len(flat)} values for shape {shape}")
        width = shape[1]
        return [dict(zip(columns, flat[r * width:(r + 1) * width], strict=True)) for r in range(shape[0])]
    by_name = {t["name"]: t["data"] for t in tensors}
    lengths = {len(v) for v in by_name.values()}
    if len(lengths) != 1:
        raise ValueError("every input tensor must have the same number of rows")
    (n,) = lengths
    if n == 0:
        raise ValueError("the input tensors are empty: send at least one row")
    return [{name: data[i] for name, data in by_name.items()} for i in range(n)]


def routes(
    *, name: str, version: Any, columns: list[str], predict: Callable[[list[dict[str, Any]]], list[Any]],
    proba: Callable[[list[dict[str, Any]]], list[dict[str, float]]] | None, ready: Callable[[], bool],
    schema_columns: list[dict[str, Any]],
) -> list[Route]:
    """Starlette routes of the V2 protocol around ``predict`` (rows → predictions)."""

    async def live(request: Request) -> JSONResponse:
        return JSONResponse({"live": True})

    async def is_ready(request: Request) -> JSONResponse:
        ok = ready()
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    async def model_meta(request: Request) -> JSONResponse:
        if request.path_params["model"] != name:
            return _error(404, f"no model named {request.path_params['model']!r}; this server has {name!r}")
        inputs = [{"name": c["name"], "datatype": DATATYPES.get(c["kind"], "BYTES"), "shape": [-1]}
                  for c in schema_columns]
        outputs = [{"name": "predict", "datatype": "BYTES", "shape": [-1]}]
        if proba is not None:
            outputs.append({"name": "predict_proba", "datatype": "FP64", "shape": [-1, -1]})
        return JSONResponse({"name": name, "versions": [str(version)], "platform": "bentoml",
                             "inputs": inputs, "outputs": outputs})

    async def infer(request: Request) -> JSONResponse:
        from pydantic import ValidationError

        if request.path_params["model"] != name:
            return _error(404, f"no model named {request.path_params['model']!r}; this server has {name!r}")
        try:
            body = await request.json()
        except Exception:
            return _error(400, "the body is not valid JSON")
        try:
            rows = _rows(body, columns)
            wanted = {o.get("name") for o in body.get("outputs") or [] if isinstance(o, dict)} or {"predict"}
            unknown = wanted - {"predict", "predict_proba"}
            if unknown or ("predict_proba" in wanted and proba is None):
                raise ValueError(f"unknown output(s) {sorted(unknown or {'predict_proba'})}; "
                                 f"this model offers {['predict'] + (['predict_proba'] if proba else [])}")
            outputs = []
            if "predict" in wanted:
                data = predict(rows)
                outputs.append({"name": "predict", "shape": [len(data)], "datatype": _datatype(data),
                                "data": data})
            if "predict_proba" in wanted and proba is not None:
                records = proba(rows)
                classes = list(records[0]) if records else []
                flat = [r[c] for r in records for c in classes]
                outputs.append({"name": "predict_proba", "shape": [len(records), len(classes)],
                                "datatype": "FP64", "data": flat, "parameters": {"classes": classes}})
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            return _error(400, f"invalid input at {field}: {first['msg']}")
        except ValueError as exc:
            return _error(400, str(exc))
        except Exception as exc:  # the model's own failure: say what, never a traceback
            return _error(422, f"the model could not predict these rows: {type(exc).__name__}: {exc}")
        return JSONResponse({"model_name": name, "model_version": str(version),
                             "id": str(body.get("id") or uuid.uuid4()), "outputs": outputs})

    return [
        Route("/v2/health/live", live, methods=["GET"]),
        Route("/v2/health/ready", is_ready, methods=["GET"]),
        Route("/v2/models/{model}", model_meta, methods=["GET"]),
        Route("/v2/models/{model}/ready", is_ready, methods=["GET"]),
        Route("/v2/models/{model}/infer", infer, methods=["POST"]),
    ]
