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


TENSOR_TYPES = ("BOOL", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64",
                "FP16", "FP32", "FP64", "BYTES")


def _is_tensor(t: Any) -> bool:
    """A V2 input tensor as the OpenAPI document declares it."""
    return (
        isinstance(t, dict) and isinstance(t.get("name"), str) and isinstance(t.get("data"), list)
        and isinstance(t.get("shape"), list)
        and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in t["shape"])
        and t.get("datatype") in TENSOR_TYPES
        and isinstance(t.get("parameters", {}), dict)
    )


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
        if not _is_tensor(t):
            raise ValueError(
                f"inputs[{i}] must be an object with a string 'name', a 'shape' list of non-negative "
                f"integers, a 'datatype' (one of {', '.join(TENSOR_TYPES)}) and a 'data' list"
            )
    if "id" in body and not isinstance(body["id"], str):
        raise ValueError("'id' must be a string")
    outputs = body.get("outputs", [])
    if not isinstance(outputs, list) or not all(
            isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs):
        raise ValueError("'outputs' must be a list of objects with a string 'name'")
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

    async def not_found(request: Request) -> JSONResponse:
        return _error(404, f"no V2 route {request.url.path}; this server has "
                           f"/v2/models/{name}[/ready|/infer]")

    return [
        Route("/v2/health/live", live, methods=["GET"]),
        Route("/v2/health/ready", is_ready, methods=["GET"]),
        Route("/v2/models/{model}", model_meta, methods=["GET"]),
        Route("/v2/models/{model}/ready", is_ready, methods=["GET"]),
        Route("/v2/models/{model}/infer", infer, methods=["POST"]),
        Route("/v2/{rest:path}", not_found, methods=["GET", "POST"]),
    ]


ERROR = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def openapi_paths(*, name: str, has_proba: bool) -> dict[str, Any]:
    """The V2 routes as OpenAPI paths, merged into the service's own /docs.json."""
    model = {"name": "model", "in": "path", "required": True,
             "schema": {"type": "string", "enum": [name]}}
    tensor = {
        "type": "object", "required": ["name", "shape", "datatype", "data"],
        "properties": {
            "name": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "datatype": {"type": "string", "enum": list(TENSOR_TYPES)},
            "data": {"type": "array"},
            "parameters": {"type": "object"},
        },
    }
    names = ["predict", "predict_proba"] if has_proba else ["predict"]
    request = {
        "type": "object", "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "inputs": {"type": "array", "minItems": 1, "items": tensor},
            "outputs": {"type": "array", "items": {
                "type": "object", "required": ["name"],
                "properties": {"name": {"type": "string", "enum": names}}}},
            "parameters": {"type": "object"},
        },
    }
    response = {
        "type": "object", "required": ["model_name", "outputs"],
        "properties": {
            "model_name": {"type": "string"}, "model_version": {"type": "string"},
            "id": {"type": "string"},
            "outputs": {"type": "array", "items": {
                "type": "object", "required": ["name", "shape", "datatype", "data"],
                "properties": {"name": {"type": "string"},
                               "shape": {"type": "array", "items": {"type": "integer"}},
                               "datatype": {"type": "string"}, "data": {"type": "array"},
                               "parameters": {"type": "object"}}}},
        },
    }
    flag = {"type": "object"}
    return {
        "/v2/health/live": {"get": {"tags": ["Open Inference Protocol (V2)"],
                                    "responses": {"200": _json(flag, "The server is live")}}},
        "/v2/health/ready": {"get": {"tags": ["Open Inference Protocol (V2)"], "responses": {
            "200": _json(flag, "The model is loaded"), "503": _json(flag, "Still loading")}}},
        "/v2/models/{model}": {"get": {
            "tags": ["Open Inference Protocol (V2)"], "parameters": [model],
            "responses": {"200": _json({"type": "object"}, "Model metadata: inputs, outputs"),
                          "404": _json(ERROR, "No such model")}}},
        "/v2/models/{model}/infer": {"post": {
            "tags": ["Open Inference Protocol (V2)"], "parameters": [model],
            "summary": "Predict: one tensor per column (shape [n]) or one [n, columns] tensor",
            "requestBody": {"required": True,
                            "content": {"application/json": {"schema": request}}},
            "responses": {"200": _json(response, "One output tensor per requested output"),
                          "404": _json(ERROR, "No such model")}}},
    }
