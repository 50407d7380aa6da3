"""GitHub Actions target: a workflow that re-runs the validation notebooks as a gate,
then builds the image from the very bento that was validated.

The bento archive (``docker`` target) is the artifact: CI imports it instead of rebuilding
from source, so what ships is byte for byte what passed validation here.
"""

from __future__ import annotations

import os
import shlex
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from nbdeploy.package.export import Exported, ExportError, ExportSpec, dump_yaml

__all__ = ["export_gha", "install_line", "workflow"]

CHECKOUT = "actions/checkout@v4"
SETUP_PYTHON = "actions/setup-python@v5"


def _pin(package: str) -> str | None:
    """``package==<installed version>``, or None when it is not installed here."""
    try:
        return f"{package}=={version(package)}"
    except PackageNotFoundError:
        return None


def install_line(spec: ExportSpec) -> str:
    """One ``pip install`` with the kernel's pins, plus bentoml and nbdeploy pinned to here."""
    pins = [line.strip() for line in spec.requirements if line.strip()]
    names = {p.split("==")[0].split("[")[0].strip().lower() for p in pins}
    for extra in ("bentoml", "nbdeploy"):
        pin = _pin(extra)
        if extra not in names and pin:
            pins.append(pin)
    return "python -m pip install " + " ".join(shlex.quote(p) for p in pins)


def _repo_path(path: str) -> str:
    """A notebook path as the workflow sees it: relative to the repository root (cwd)."""
    p = Path(path)
    if p.is_absolute():
        try:
            return p.relative_to(Path.cwd()).as_posix()
        except ValueError:
            return p.name
    return p.as_posix()


def _setup(spec: ExportSpec) -> list[dict[str, Any]]:
    """Steps both jobs share: checkout, Python at the kernel's version, pinned installs."""
    return [
        {"name": "Check out", "uses": CHECKOUT, "with": {"lfs": True}},
        {
            "name": f"Python {spec.python_version}",
            "uses": SETUP_PYTHON,
            "with": {"python-version": spec.python_version},
        },
        {"name": "Install the pinned packages", "run": install_line(spec)},
        {"name": "Import the validated bento", "run": 'bentoml import "$BENTO_ARCHIVE"'},
    ]


def workflow(spec: ExportSpec, export_dir: str) -> dict[str, Any]:
    """The workflow as a dict: a ``validate`` job, then ``build`` which ``needs`` it."""
    if not spec.validation_notebooks:
        raise ExportError(
            "The github-actions target needs at least one validation notebook to gate on; "
            "add one to the deployment (nbdeploy validate <notebook> --model "
            f"{spec.name}:{spec.version}) and export again."
        )
    notebooks = " ".join(shlex.quote(_repo_path(nb)) for nb in spec.validation_notebooks)
    model = f"{spec.name}:{spec.version}"
    archive = f"{export_dir}/{spec.k8s_name}-v{spec.version}.bento"
    return {
        "name": f"Deploy {spec.name}",
        "on": {
            "workflow_dispatch": {},
            "push": {
                "branches": ["main"],
                "paths": [f"{export_dir}/**", *(_repo_path(n) for n in spec.validation_notebooks)],
            },
        },
        "permissions": {"contents": "read"},
        "concurrency": {"group": f"deploy-{spec.k8s_name}", "cancel-in-progress": False},
        "env": {
            "BENTO_ARCHIVE": archive,
            "IMAGE": spec.image,
            "BENTOML_DO_NOT_TRACK": "true",
        },
        "jobs": {
            "validate": {
                "name": f"Validate {model}",
                "runs-on": "ubuntu-latest",
                "timeout-minutes": 30,
                "steps": [
                    *_setup(spec),
                    {
                        "name": "Validation notebooks (the gate)",
                        "run": f"nbdeploy validate {notebooks} --model {shlex.quote(model)}",
                    },
                ],
            },
            "build": {
                "name": f"Build image {spec.image}",
                "needs": "validate",
                "runs-on": "ubuntu-latest",
                "timeout-minutes": 45,
                "steps": [
                    *_setup(spec),
                    {
                        "name": "Build the OCI image",
                        "run": f'bentoml containerize {spec.bento_tag} -t "$IMAGE"',
                    },
                    {
                        "name": "Show the image",
                        "run": 'docker image inspect "$IMAGE" --format "{{.Id}} {{.Size}}"',
                    },
                ],
            },
        },
    }


def export_gha(spec: ExportSpec, to: Path) -> Exported:
    """Write ``.github/workflows/deploy-<name>.yml`` under ``to``."""
    export_dir = os.path.relpath(to.resolve(), Path.cwd().resolve())
    export_dir = to.name if export_dir.startswith("..") else Path(export_dir).as_posix()
    body = workflow(spec, export_dir)
    path = to / ".github" / "workflows" / f"deploy-{spec.k8s_name}.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (
        f"Deploy {spec.name} v{spec.version}: validation notebooks gate the image build.\n"
        "Written by nbdeploy. Copy to .github/workflows/ at the repository root; commit the\n"
        f"bento archive at {body['env']['BENTO_ARCHIVE']} (Git LFS suits it) with the notebooks.\n"
        'To push the image, add a registry login and `docker push "$IMAGE"` to the build job.'
    )
    path.write_text(dump_yaml(body, header))
    result = Exported()
    result.add(path, "GitHub Actions workflow: validation gate, then image build")
    result.commands_from = "the repository root"
    result.commands = [
        f"mkdir -p .github/workflows && cp {export_dir}/{path.relative_to(to)} .github/workflows/",
        f"git add .github/workflows/{path.name} {body['env']['BENTO_ARCHIVE']}",
    ]
    if not (to / f"{spec.k8s_name}-v{spec.version}.bento").exists():
        result.notes.append(
            "The workflow imports the bento archive; write it with the docker target "
            "(export ... --target docker) into the same folder."
        )
    return result
