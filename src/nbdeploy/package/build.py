"""Write the generated service into a build folder and build a Bento from it.

Builds never reach the network: ``lock_packages`` is off, so BentoML records our pins and
does not resolve or install anything into the user's environment."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from nbdeploy.capture.environment import python_version, requirement_lines
from nbdeploy.capture.frameworks import ModelInfo
from nbdeploy.capture.schema import Schema
from nbdeploy.package import template
from nbdeploy.package.runtime import frames
from nbdeploy.package.runtime.integrity import artifact_sha256  # noqa: F401  (re-exported)

RUNTIME = Path(__file__).parent / "runtime"
CLASS_NAME = "ModelService"
NOT_IN_BENTO = {"bentoml"}  # BentoML adds its own pin when the image is built
RUNTIME_MODULES = ("frames.py", "integrity.py", "explainer.py", "guard.py", "v2.py")


@dataclass
class BuildResult:
    """The built bento and the folder holding its readable sources."""

    bento_tag: str
    build_dir: Path
    bento_path: str = ""


def reference_records(reference: pd.DataFrame) -> list[dict[str, Any]]:
    """Reference rows as JSON-ready dicts (NaN as null, numpy scalars as Python)."""
    return [
        {k: frames.to_json(v) for k, v in row.items()} for row in reference.to_dict(orient="records")
    ]


def write_sources(
    build_dir: Path,
    *,
    name: str,
    model_tag: str,
    info: ModelInfo,
    schema: Schema,
    reference: pd.DataFrame,
    metadata: dict[str, Any],
) -> None:
    """Write service.py, frames.py, explainer.py, metadata.json and reference.json."""
    if build_dir.exists():
        shutil.rmtree(build_dir)
    build_dir.mkdir(parents=True)
    (build_dir / "service.py").write_text(
        template.render_service(
            name=name, class_name=CLASS_NAME, model_tag=model_tag, info=info, schema=schema
        )
    )
    for module in RUNTIME_MODULES:
        if (RUNTIME / module).exists():
            shutil.copy(RUNTIME / module, build_dir / module)
    context = template.service_context(schema, info, metadata)
    (build_dir / "metadata.json").write_text(json.dumps(context, indent=2, default=str))
    (build_dir / "reference.json").write_text(
        json.dumps(reference_records(reference), default=str)
    )


@contextmanager
def _libyaml() -> Iterator[None]:
    """Let BentoML parse YAML with libyaml while it builds and stores the bento.

    A build parses the bento's ~15 KB bento.yaml three times with PyYAML's pure-Python loader
    (about 0.2 s each); libyaml reads the same documents identically in a few ms."""
    import yaml

    fast = getattr(yaml, "CSafeLoader", None)
    if fast is None:
        yield
        return
    original = yaml.safe_load
    yaml.safe_load = lambda stream: yaml.load(stream, Loader=fast)  # CSafeLoader: still safe
    try:
        yield
    finally:
        yaml.safe_load = original


def build_bento(
    build_dir: Path,
    *,
    bento_name: str,
    bento_version: str,
    model_tag: str,
    pins: dict[str, str],
    labels: dict[str, str],
) -> BuildResult:
    """Build the bento from ``build_dir`` with locking off (no network, nothing installed)."""
    import bentoml

    # bentos.build imports `service` from build_ctx; drop the one a previous build imported
    for module in ("service", *(m.removesuffix(".py") for m in RUNTIME_MODULES)):
        sys.modules.pop(module, None)
    packages = [line for line in requirement_lines(pins) if line.split("==")[0] not in NOT_IN_BENTO]
    with _libyaml():
        bento = bentoml.bentos.build(
            f"service:{CLASS_NAME}",
            name=bento_name,
            version=bento_version,
            build_ctx=str(build_dir),
            include=["*.py", "*.json"],
            labels=labels,
            models=[model_tag],
            python={"packages": packages, "lock_packages": False},
            docker={"python_version": ".".join(python_version().split(".")[:2])},
        )
    return BuildResult(bento_tag=str(bento.tag), build_dir=build_dir, bento_path=str(bento.path))
