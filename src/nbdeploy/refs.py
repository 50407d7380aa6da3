"""Deployment names and ``NAME[:VERSION]`` references, and the progress-callback type."""

from __future__ import annotations

import re
from collections.abc import Callable

from nbdeploy.errors import NbdeployError

Progress = Callable[[str, str], None]
NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9_.-]{0,61}[a-z0-9])?$")


def noop(stage: str, message: str) -> None:
    pass


def check_name(name: str) -> str:
    """Deployment names become BentoML tags and URL parts: lowercase, digits, - _ ."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise NbdeployError(
            f"invalid deployment name {name!r}: use 1-63 lowercase letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit (e.g. 'iris-classifier')."
        )
    return name


def parse_ref(ref: str) -> tuple[str, int | None]:
    """``"name"`` or ``"name:3"`` → (name, version or None)."""
    name, _, ver = str(ref).partition(":")
    if ver and not ver.lstrip("v").isdigit():
        raise NbdeployError(f"invalid version in {ref!r}: write NAME or NAME:VERSION, e.g. iris:3.")
    return name, int(ver.lstrip("v")) if ver else None
