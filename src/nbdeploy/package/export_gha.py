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
from nbdeploy.package.export_wheel import write_wheel

__all__ = ["GATE_STEP", "export_gha", "gate_script", "install_line", "workflow"]

WHEEL_DIR = "wheels"

CHECKOUT = "actions/checkout@v4"
READY_TRIES = 180  # seconds the gate waits for the bento server's /readyz
GATE_STEP = "Serve the bento and run the validation notebooks (the gate)"
SETUP_PYTHON = "actions/setup-python@v5"


def _pin(package: str) -> str | None:
    """``package==<installed version>``, or None when it is not installed here."""
    try:
        return f"{package}=={version(package)}"
    except PackageNotFoundError:
        return None


def install_line(spec: ExportSpec, wheel: str = "") -> str:
    """One ``pip install`` with the kernel's pins, bentoml pinned to here, and nbdeploy.

    nbdeploy is not on PyPI: ``wheel`` is the path (from the repository root) of the wheel
    the export wrote; without it nbdeploy is pinned to this version by name."""
    def name_of(pin: str) -> str:
        return pin.split("==")[0].split("[")[0].strip().lower()

    pins = [line.strip() for line in spec.requirements if line.strip()]
    if wheel:
        pins = [p for p in pins if name_of(p) != "nbdeploy"]
    names = {name_of(p) for p in pins}
    if "bentoml" not in names and (pin := _pin("bentoml")):
        pins.append(pin)
    if wheel:
        pins.append(wheel)
    elif "nbdeploy" not in names and (pin := _pin("nbdeploy")):
        pins.append(pin)
    return "python -m pip install " + " ".join(shlex.quote(p) for p in pins)


def _model_tag(spec: ExportSpec) -> str | None:
    """The tag of the model inside the bento (None when the bento is not in the store)."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        models = bentoml.bentos.get(spec.bento_tag).info.all_models
    except (NotFound, ValueError):
        return None
    return str(models[0].tag) if models else None


def gate_script(spec: ExportSpec, notebooks: list[str]) -> str:
    """Serve the imported bento on ``$PORT``, wait for /readyz, run the notebooks against it."""
    params = [f"model_name={spec.name}", f"model_version={spec.version}"]
    tag = _model_tag(spec)
    if tag:
        params.append(f"model_tag={tag}")
    args = " ".join(f"-p {shlex.quote(p)}" for p in params)
    nbs = " ".join(shlex.quote(_repo_path(nb)) for nb in notebooks)
    return f"""\
bentoml serve "$BENTO_TAG" --host 127.0.0.1 --port "$PORT" > bento-serve.log 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 1 {READY_TRIES}); do
  if curl -fsS "http://127.0.0.1:$PORT/readyz" > /dev/null 2>&1; then break; fi
  if ! kill -0 "$server" 2>/dev/null; then tail -n 50 bento-serve.log; exit 1; fi
  sleep 1
done
curl -fsS "http://127.0.0.1:$PORT/readyz" > /dev/null || {{ tail -n 50 bento-serve.log; exit 1; }}
nbdeploy validate {nbs} {args} -p "endpoint=http://127.0.0.1:$PORT"
"""


def _repo_path(path: str) -> str:
    """A notebook path as the workflow sees it: relative to the repository root (cwd)."""
    p = Path(path)
    if p.is_absolute():
        try:
            return p.relative_to(Path.cwd()).as_posix()
        except ValueError:
            return p.name
    return p.as_posix()


def _setup(spec: ExportSpec, wheel: str) -> list[dict[str, Any]]:
    """Steps both jobs share: checkout, Python at the kernel's version, pinned installs."""
    return [
        {"name": "Check out", "uses": CHECKOUT, "with": {"lfs": True}},
        {
            "name": f"Python {spec.python_version}",
            "uses": SETUP_PYTHON,
            "with": {"python-version": spec.python_version},
        },
        {"name": "Install the pinned packages and nbdeploy", "run": install_line(spec, wheel)},
        # an absolute path: BentoML's archive reader misreads relative ones
        {"name": "Import the validated bento", "run": 'bentoml import "$(pwd)/$BENTO_ARCHIVE"'},
    ]


def workflow(spec: ExportSpec, export_dir: str, wheel: str = "") -> dict[str, Any]:
    """The workflow as a dict: a ``validate`` job, then ``build`` which ``needs`` it.

    ``wheel`` is the nbdeploy wheel's file name inside ``export_dir``."""
    if not spec.validation_notebooks:
        raise ExportError(
            "The github-actions target needs at least one validation notebook to gate on; "
            "add one to the deployment (nbdeploy validate <notebook> --model "
            f"{spec.name}:{spec.version}) and export again."
        )
    model = f"{spec.name}:{spec.version}"
    wheel_path = f"./{export_dir}/{wheel}" if wheel else ""
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
            "BENTO_TAG": spec.bento_tag,
            "PORT": str(spec.port),
            "IMAGE": spec.image,
            "BENTOML_DO_NOT_TRACK": "true",
        },
        "jobs": {
            "validate": {
                "name": f"Validate {model}",
                "runs-on": "ubuntu-latest",
                "timeout-minutes": 30,
                "steps": [
                    *_setup(spec, wheel_path),
                    {"name": GATE_STEP, "run": gate_script(spec, spec.validation_notebooks)},
                ],
            },
            "build": {
                "name": f"Build image {spec.image}",
                "needs": "validate",
                "runs-on": "ubuntu-latest",
                "timeout-minutes": 45,
                "steps": [
                    *_setup(spec, wheel_path),
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
    wheel = write_wheel(to / WHEEL_DIR)
    body = workflow(spec, export_dir, f"{WHEEL_DIR}/{wheel.name}")
    path = to / ".github" / "workflows" / f"deploy-{spec.k8s_name}.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (
        f"Deploy {spec.name} v{spec.version}: validation notebooks gate the image build.\n"
        "Written by nbdeploy. Copy to .github/workflows/ at the repository root; commit the\n"
        f"bento archive at {body['env']['BENTO_ARCHIVE']} (Git LFS suits it) and the nbdeploy\n"
        f"wheel under {export_dir}/{WHEEL_DIR}/ with the notebooks. The validate job serves the\n"
        "imported bento on $PORT and runs the notebooks against it (endpoint parameter).\n"
        'To push the image, add a registry login and `docker push "$IMAGE"` to the build job.'
    )
    path.write_text(dump_yaml(body, header))
    result = Exported()
    result.add(path, "GitHub Actions workflow: validation gate, then image build")
    result.add(wheel, "the nbdeploy wheel the workflow installs (nbdeploy is not on PyPI)")
    result.commands_from = "the repository root"
    result.commands = [
        f"mkdir -p .github/workflows && cp {export_dir}/{path.relative_to(to)} .github/workflows/",
        f"git add .github/workflows/{path.name} {body['env']['BENTO_ARCHIVE']} "
        f"{export_dir}/{WHEEL_DIR}/{wheel.name}",
    ]
    if not (to / f"{spec.k8s_name}-v{spec.version}.bento").exists():
        result.notes.append(
            "The workflow imports the bento archive; write it with the docker target "
            "(export ... --target docker) into the same folder."
        )
    return result
