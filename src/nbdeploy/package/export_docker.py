"""Docker target: a self-contained bento archive and the exact build context BentoML would use.

BentoML 1.4 can write its container build context without a Docker engine; only the
``docker build`` step needs one. So this always writes the archive and the context, and
builds the image only when an engine answers ``docker info``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from nbdeploy.package.export import Exported, ExportError, ExportSpec

__all__ = ["build_commands", "docker_engine_running", "export_docker", "write_context"]

ENGINE_TIMEOUT = 5.0
BUILD_TIMEOUT = 1800.0


def docker_engine_running(timeout: float = ENGINE_TIMEOUT) -> bool:
    """True when a ``docker`` client exists and its engine answers ``docker info`` in time."""
    if shutil.which("docker") is None:
        return False
    try:
        done = subprocess.run(["docker", "info"], capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _bento(tag: str):  # -> bentoml.Bento
    """The bento from the local store, or a clear error saying how to get it there."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        return bentoml.bentos.get(tag)
    except NotFound:
        raise ExportError(
            f"Bento {tag!r} is not in the local BentoML store (`bentoml list` shows what is). "
            "Deploy the model first, or import its archive with: bentoml import <file>.bento"
        ) from None


def export_archive(spec: ExportSpec, to: Path) -> Path:
    """``bentoml export``: one file holding the bento and every model it references."""
    import bentoml

    _bento(spec.bento_tag)
    archive = to / f"{spec.k8s_name}-v{spec.version}.bento"
    archive.unlink(missing_ok=True)
    bentoml.bentos.export_bento(spec.bento_tag, str(archive.resolve()))  # relative: fsspec misreads
    return archive


def write_context(spec: ExportSpec, folder: Path) -> Path:
    """Write the build context ``bentoml containerize`` would use; returns its Dockerfile."""
    try:
        from bentoml._internal.container import construct_containerfile
    except ImportError as exc:  # pragma: no cover - only if BentoML moves its internals
        raise ExportError(
            "This BentoML version cannot write a build context without building; "
            f"use `bentoml containerize {spec.bento_tag}` on a machine with Docker. ({exc})"
        ) from None
    bento = _bento(spec.bento_tag)
    if folder.exists():
        shutil.rmtree(folder)
    with construct_containerfile(bento, enable_buildkit=True, add_header=True) as (ctx, dfile):
        shutil.copytree(ctx, folder)
        dockerfile = folder / "Dockerfile"
        shutil.copyfile(dfile, dockerfile)
    return dockerfile


def build_commands(spec: ExportSpec) -> dict[str, str]:
    """The two equivalent ways to build the image, as shell commands run from the export."""
    return {
        "docker": f"DOCKER_BUILDKIT=1 docker build -t {spec.image} docker/",
        "bentoml": (
            f'bentoml import "$(pwd)/{spec.k8s_name}-v{spec.version}.bento" && '
            f"bentoml containerize {spec.bento_tag} -t {spec.image}"
        ),
    }


def _build_sh(spec: ExportSpec) -> str:
    cmds = build_commands(spec)
    return f"""#!/usr/bin/env bash
# Build the OCI image of {spec.name} v{spec.version} (bento {spec.bento_tag}). Needs Docker.
# Written by nbdeploy; IMAGE=<registry>/<name>:<tag> ./build.sh to choose the image name.
set -euo pipefail
cd "$(dirname "$0")"
IMAGE="${{IMAGE:-{spec.image}}}"
if ! docker info >/dev/null 2>&1; then
  echo "No Docker engine answers here: start one, or copy this folder to one." >&2
  exit 1
fi
DOCKER_BUILDKIT=1 docker build -t "$IMAGE" docker/
echo "Built $IMAGE. Push it with: docker push $IMAGE"
# Same image through BentoML instead (needs bentoml installed):
#   {cmds["bentoml"]}
"""


def _build_md(spec: ExportSpec) -> str:
    cmds = build_commands(spec)
    return f"""# Building the image of `{spec.name}` version {spec.version}

- `{spec.k8s_name}-v{spec.version}.bento`: the bento `{spec.bento_tag}` with its models,
  made by `bentoml export`. `bentoml import` it on any machine to get the same bento back.
- `docker/`: the build context BentoML's `containerize` uses for this bento (its
  `Dockerfile`, the service source, pinned requirements and the models).
- `build.sh`: builds the image `{spec.image}` from `docker/`.

Build with Docker (BuildKit; the Dockerfile uses a pip cache mount):

```bash
{cmds["docker"]}
```

or with BentoML, which writes the same Dockerfile:

```bash
{cmds["bentoml"]}
```

The container listens on port 3000 (`EXPOSE 3000`), runs as the non-root user `bentoml`
and starts `bentoml serve` through its entrypoint. Try it locally:

```bash
docker run --rm -p {spec.port}:3000 -e NBDEPLOY_API_KEY="$(openssl rand -hex 32)" {spec.image}
```

Then push it to the registry your cluster pulls from: `docker push {spec.image}`.
"""


def _run_build(spec: ExportSpec, context: Path) -> subprocess.CompletedProcess[str]:
    """Run ``docker build`` on the context (only called when an engine answers)."""
    env = {**os.environ, "DOCKER_BUILDKIT": "1"}
    return subprocess.run(
        ["docker", "build", "-t", spec.image, str(context)],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        env=env,
        check=False,
    )


def export_docker(spec: ExportSpec, to: Path) -> Exported:
    """Write the archive, the build context and build instructions; build if Docker runs."""
    result = Exported()
    archive = export_archive(spec, to)
    result.add(archive, "self-contained bento archive (service, pinned requirements, models)")
    context = to / "docker"
    dockerfile = write_context(spec, context)
    result.add(context, "Docker build context, exactly as `bentoml containerize` makes it")
    result.add(dockerfile, "the Dockerfile BentoML generates for this bento")
    script = to / "build.sh"
    script.write_text(_build_sh(spec))
    script.chmod(0o755)
    result.add(script, "builds the image with Docker")
    notes = to / "BUILD.md"
    notes.write_text(_build_md(spec))
    result.add(notes, "how to build, run and push the image")
    cmds = build_commands(spec)
    result.commands = [cmds["docker"], f"docker push {spec.image}"]
    if not spec.build_image:
        result.notes.append(f"Build context ready at {context}; image not built (as asked).")
    elif not docker_engine_running():
        result.notes.append(
            f"No Docker engine is running here; the build context is ready at {context}. "
            f"On a machine with Docker, run: cd {to} && ./build.sh "
            f"(or: {cmds['docker']})"
        )
    else:
        done = _run_build(spec, context)
        if done.returncode == 0:
            result.notes.append(f"Built image {spec.image}. Push it with: docker push {spec.image}")
        else:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
            result.ok = False
            result.notes.append(
                f"docker build failed (exit {done.returncode}); the context is at {context}. "
                f"Last lines:\n{tail}\nFix the cause, then run: cd {to} && ./build.sh"
            )
    return result
