"""Exact pins, read from the kernel, of the packages a model needs."""

from __future__ import annotations

import importlib.metadata as md
import platform
import sys
from functools import lru_cache

BASE_PACKAGES = ("bentoml", "pandas", "numpy", "pydantic")
# Modules whose distributions are already covered, or are nbdeploy itself (never a runtime need).
_SKIP = {"__main__", "builtins", "nbdeploy", "cloudpickle", "copyreg", "_codecs"}


@lru_cache(maxsize=1)
def _module_to_dists() -> dict[str, list[str]]:
    return md.packages_distributions()


def distributions_for(modules: set[str]) -> set[str]:
    """Map top-level module names to installed distribution names (stdlib ones drop out)."""
    dists: set[str] = set()
    table = _module_to_dists()
    for mod in modules:
        if mod in _SKIP or mod in sys.stdlib_module_names or mod.startswith("_"):
            continue
        for dist in table.get(mod, []):
            dists.add(dist)
    return dists


def installed_version(dist: str) -> str | None:
    """The installed version of a distribution, or None when it is not installed."""
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def pins_for(framework_packages: tuple[str, ...], modules: set[str]) -> dict[str, str]:
    """``{distribution: version}`` for the base packages, the framework and pickled modules."""
    wanted = set(BASE_PACKAGES) | set(framework_packages) | distributions_for(modules)
    pins: dict[str, str] = {}
    for dist in sorted(wanted, key=str.lower):
        version = installed_version(dist)
        if version:
            pins[_canonical(dist)] = version
    return pins


def _canonical(dist: str) -> str:
    return dist.lower().replace("_", "-")


def python_version() -> str:
    """The kernel's Python version, e.g. ``3.11.7``."""
    return platform.python_version()


def requirement_lines(pins: dict[str, str]) -> list[str]:
    """Pins as requirement lines, ``name==version``."""
    return [f"{name}=={version}" for name, version in sorted(pins.items())]
