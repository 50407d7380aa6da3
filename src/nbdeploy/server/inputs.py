"""Validation of REST request bodies and path parts; errors name the bad field."""

from __future__ import annotations

import json
from typing import Any

from nbdeploy.errors import NbdeployError


class BadInput(NbdeployError):
    """A request field the client must fix (answered 400 with the field's name)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def parse_body(raw: bytes, allowed: set[str]) -> dict[str, Any]:
    """The JSON object in a request body ({} when empty); unknown keys are refused."""
    if not raw or not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadInput("body", f"the request body is not valid JSON ({exc}); send an object "
                               'such as {"version": 2}.') from None
    if not isinstance(data, dict):
        raise BadInput("body", f"the request body must be a JSON object, not {type(data).__name__}.")
    unknown = sorted(set(data) - allowed)
    if unknown:
        expected = ", ".join(sorted(allowed)) or "no fields"
        raise BadInput(unknown[0], f"unknown field {unknown[0]!r}; this endpoint accepts {expected}.")
    return data


def version_field(data: dict[str, Any], *, required: bool = False) -> int | None:
    """The body's ``version``: a positive JSON integer, or None when absent and optional."""
    if "version" not in data or data["version"] is None:
        if required:
            raise BadInput("version", 'version is required, e.g. {"version": 2}.')
        return None
    value = data["version"]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadInput("version", f"version must be a positive integer, got {value!r}.")
    return value


def weights_field(data: dict[str, Any]) -> dict[int, int]:
    """The body's ``weights`` {"3": 90, "4": 10} as {3: 90, 4: 10}."""
    weights = data.get("weights")
    if not isinstance(weights, dict) or not weights:
        raise BadInput("weights", 'weights must be a non-empty object such as {"3": 90, "4": 10}.')
    out: dict[int, int] = {}
    for key, value in weights.items():
        text = str(key).lstrip("v")
        if not text.isdigit() or int(text) < 1:
            raise BadInput("weights", f"weights keys are version numbers, got {key!r}.")
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise BadInput("weights", f"weights[{key!r}] must be a non-negative integer, got {value!r}.")
        out[int(text)] = value
    if sum(out.values()) <= 0:
        raise BadInput("weights", "at least one version needs a positive weight.")
    return out


def name_part(name: str) -> str:
    """A deployment name from the URL, checked like nbdeploy.api.check_name."""
    from nbdeploy.refs import NAME_RE

    if not NAME_RE.match(name):
        raise BadInput("name", f"invalid deployment name {name!r}: use lowercase letters, digits, "
                               "'-', '_' or '.', e.g. 'iris-classifier'.")
    return name
