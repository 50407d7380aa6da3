"""Capture: from a live Python object to a saved model with schema and pins."""

from nbdeploy.capture.environment import pins_for
from nbdeploy.capture.frameworks import ADAPTERS, Adapter, adapter_for, register_adapter
from nbdeploy.capture.schema import Schema, infer_schema

__all__ = [
    "ADAPTERS",
    "Adapter",
    "Schema",
    "adapter_for",
    "infer_schema",
    "pins_for",
    "register_adapter",
]
