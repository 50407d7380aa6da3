"""Artifact fingerprint shipped inside every nbdeploy bento: a tampered model is not served."""

from __future__ import annotations

import hashlib
from pathlib import Path


def artifact_sha256(model_dir: str | Path) -> str:
    """sha256 over a stored model's files (names and bytes), ``model.yaml`` excluded."""
    digest = hashlib.sha256()
    root = Path(model_dir)
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name != "model.yaml":
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()
