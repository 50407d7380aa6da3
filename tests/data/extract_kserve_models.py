"""Regenerate kserve-0.21.0-inferenceservice-models.json from KServe's PyPI SDK.

    pip download kserve==0.21.0 --no-deps -d /tmp/kserve && unzip -q /tmp/kserve/*.whl \
        'kserve/models/*' -d /tmp/kserve/x
    python tests/data/extract_kserve_models.py /tmp/kserve/x > \
        tests/data/kserve-0.21.0-inferenceservice-models.json

Reads the OpenAPI-generated model classes as text (nothing is imported or run): each
model's JSON field names (``attribute_map``), declared types (``openapi_types``) and the
fields its client-side validation requires; keeps the models an InferenceService reaches.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

SOURCE = (
    "kserve 0.21.0 (PyPI wheel kserve-0.21.0-py3-none-any.whl), kserve/models/*.py: the "
    "OpenAPI-generated models of KServe's serving.kserve.io API (Apache-2.0). Extracted: each "
    "model's JSON field names (attribute_map), their declared types (openapi_types) and the "
    "fields its client-side validation requires. Kubernetes types (V1Container, ...) are "
    "checked against Kubernetes' own schemas."
)


def models(folder: Path) -> dict[str, dict]:
    """Every generated model class under ``folder``: its fields and required fields."""
    found: dict[str, dict] = {}
    for path in sorted(folder.glob("*.py")):
        text = path.read_text()
        for node in ast.parse(text).body:
            if not isinstance(node, ast.ClassDef):
                continue
            assigned = {st.targets[0].id: ast.literal_eval(st.value) for st in node.body
                        if isinstance(st, ast.Assign) and isinstance(st.targets[0], ast.Name)
                        and st.targets[0].id in ("openapi_types", "attribute_map")}
            if "openapi_types" not in assigned:
                continue
            names = assigned["attribute_map"]
            required = sorted(set(re.findall(r"Invalid value for `(\w+)`, must not be `None`", text)))
            found[node.name] = {
                "fields": {names[k]: v for k, v in assigned["openapi_types"].items()},
                "required": [names.get(k, k) for k in required],
            }
    return found


def main() -> None:
    everything = models(Path(sys.argv[1]) / "kserve" / "models")
    keep: set[str] = set()
    todo = ["V1beta1InferenceService"]
    while todo:
        name = todo.pop()
        if name in keep or name not in everything:
            continue
        keep.add(name)
        for kind in everything[name]["fields"].values():
            todo += re.findall(r"V1beta1\w+|V1alpha1\w+", kind)
    print(json.dumps({"source": SOURCE, "models": {n: everything[n] for n in sorted(keep)}},
                     indent=1))


if __name__ == "__main__":
    main()
