"""A wheel of the running nbdeploy, written next to an export so CI can install it.

nbdeploy is not on PyPI, so a workflow cannot ``pip install nbdeploy==X``. Instead the export
carries a wheel packed from the very package that built and validated the bento: the
``nbdeploy`` import package as it is loaded here, with the installed distribution's metadata
(version, dependencies, console script). It holds the Python code only; the JupyterLab
sidebar is not needed to serve or validate in CI.
"""

from __future__ import annotations

import base64
import hashlib
import zipfile
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import nbdeploy
from nbdeploy.package.export import ExportError

__all__ = ["write_wheel"]

SKIP_DIRS = {"__pycache__", "labextension"}
TAG = "py3-none-any"


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def _metadata() -> tuple[str, str, str]:
    """(version, METADATA, entry_points.txt) of the installed distribution; runtime deps only."""
    try:
        dist = distribution("nbdeploy")
    except PackageNotFoundError:
        raise ExportError(
            "nbdeploy's distribution metadata is missing (is it installed with pip?); "
            "the github-actions target needs it to write a wheel for CI."
        ) from None
    version = dist.version
    lines = ["Metadata-Version: 2.1", "Name: nbdeploy", f"Version: {version}"]
    for key in ("Summary", "Requires-Python", "License"):
        if dist.metadata.get(key):
            lines.append(f"{key}: {dist.metadata[key]}")
    lines += [f"Requires-Dist: {req}" for req in dist.requires or [] if "extra ==" not in req]
    entry_points = dist.read_text("entry_points.txt") or "[console_scripts]\nnbdeploy = nbdeploy.cli:main\n"
    return version, "\n".join(lines) + "\n", entry_points


def write_wheel(folder: Path) -> Path:
    """Pack the loaded ``nbdeploy`` package into ``folder/nbdeploy-<v>-py3-none-any.whl``."""
    version, metadata, entry_points = _metadata()
    package = Path(nbdeploy.__file__).resolve().parent
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("nbdeploy-*.whl"):
        old.unlink()
    wheel = folder / f"nbdeploy-{version}-{TAG}.whl"
    info = f"nbdeploy-{version}.dist-info"
    files: list[tuple[str, bytes]] = []
    for path in sorted(package.rglob("*")):
        rel = path.relative_to(package)
        if path.is_file() and not SKIP_DIRS.intersection(rel.parts) and path.suffix != ".pyc":
            files.append((f"nbdeploy/{rel.as_posix()}", path.read_bytes()))
    files += [
        (f"{info}/METADATA", metadata.encode()),
        (f"{info}/WHEEL", f"Wheel-Version: 1.0\nGenerator: nbdeploy\nRoot-Is-Purelib: true\n"
                          f"Tag: {TAG}\n".encode()),
        (f"{info}/entry_points.txt", entry_points.encode()),
    ]
    record = [_record_line(name, data) for name, data in files] + [f"{info}/RECORD,,"]
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files:
            zf.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data,
                        compress_type=zipfile.ZIP_DEFLATED)
        zf.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return wheel

