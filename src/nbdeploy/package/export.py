"""Export a deployed version for production: one front, one small module per target.

Targets are registered like papermill's engines: a name maps to a function
``(spec, to) -> Exported`` living in its own module (``export_docker``, ``export_k8s``,
``export_kserve``, ``export_gha``). Third-party targets can be added with
:func:`register_target` or the ``nbdeploy.export_targets`` entry-point group.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "ExportError",
    "ExportSpec",
    "Exported",
    "Variant",
    "available_targets",
    "dns_name",
    "dump_yaml",
    "export",
    "register_target",
]

ENTRY_POINT_GROUP = "nbdeploy.export_targets"
INDEX_FILE = "EXPORT.md"


class ExportError(Exception):
    """An export cannot be done as asked; the message says what to do instead."""


def dns_name(text: str, max_len: int = 63) -> str:
    """Turn any text into a DNS-1035 label (lowercase, ``[a-z0-9-]``, starts with a letter)."""
    name = re.sub(r"[^a-z0-9-]+", "-", str(text).lower())
    name = re.sub(r"-{2,}", "-", name).strip("-")
    if not name or not name[0].isalpha():
        name = f"m-{name}".rstrip("-")
    return name[:max_len].rstrip("-")


def _default_image(bento_tag: str, version: int) -> str:
    """The OCI reference nbdeploy gives a version's image: ``<bento name>:<version>``."""
    repo = re.sub(r"[^a-z0-9._/-]+", "-", bento_tag.split(":", 1)[0].lower()).strip("-._/")
    return f"{repo or 'model'}:{version}"


@dataclass
class Variant:
    """One version taking part in a traffic split (or the shadow): its bento, image and weight."""

    version: int
    bento_tag: str
    image: str = ""
    weight: int = 0

    def __post_init__(self) -> None:
        self.version = int(self.version)
        self.weight = int(self.weight)
        if not self.image:
            self.image = _default_image(self.bento_tag, self.version)

    @classmethod
    def coerce(cls, value: Any) -> Variant:
        """Accept a Variant, a dict, or a ``(version, bento_tag, image[, weight])`` tuple."""
        if isinstance(value, Variant):
            return value
        if isinstance(value, dict):
            return cls(**value)
        return cls(*value)


def _default_resources() -> dict[str, dict[str, str]]:
    """Requests and limits that suit a scikit-learn model behind one BentoML worker."""
    return {
        "requests": {"cpu": "250m", "memory": "512Mi"},
        "limits": {"cpu": "1", "memory": "1Gi"},
    }


@dataclass
class ExportSpec:
    """Everything an export target needs, as plain data filled from the registry."""

    name: str
    version: int
    bento_tag: str
    image: str = ""
    port: int = 3000
    replicas: int = 2
    min_replicas: int = 2
    max_replicas: int = 5
    target_cpu: int = 70
    resources: dict[str, dict[str, str]] = field(default_factory=_default_resources)
    api_key_secret: str = ""
    traffic: list[Variant] = field(default_factory=list)
    shadow: Variant | None = None
    validation_notebooks: list[str] = field(default_factory=list)
    requirements: list[str] = field(default_factory=list)
    python_version: str = f"{sys.version_info.major}.{sys.version_info.minor}"
    build_image: bool = True  # docker target: build when a Docker engine answers

    def __post_init__(self) -> None:
        self.version = int(self.version)
        if ":" not in self.bento_tag:
            raise ExportError(
                f"bento_tag {self.bento_tag!r} is not a full tag; expected 'name:version'."
            )
        self.image = self.image or _default_image(self.bento_tag, self.version)
        self.api_key_secret = self.api_key_secret or f"{self.k8s_name}-api-key"
        self.traffic = [Variant.coerce(v) for v in self.traffic]
        self.shadow = Variant.coerce(self.shadow) if self.shadow is not None else None
        self.validation_notebooks = [str(p) for p in self.validation_notebooks]
        self._check()

    def _check(self) -> None:
        """Refuse settings a cluster would reject later, with the fix in the message."""
        if not 1 <= self.port <= 65535:
            raise ExportError(f"port {self.port} is not a TCP port (1-65535).")
        if self.replicas < 1 or self.min_replicas < 1:
            raise ExportError("replicas and min_replicas must be at least 1.")
        if self.min_replicas > self.max_replicas:
            raise ExportError(
                f"min_replicas ({self.min_replicas}) is above max_replicas ({self.max_replicas})."
            )
        if not 1 <= self.target_cpu <= 100:
            raise ExportError(f"target_cpu {self.target_cpu} must be a percentage (1-100).")
        if self.traffic:
            total = sum(v.weight for v in self.traffic)
            if total != 100 or any(v.weight < 0 for v in self.traffic):
                raise ExportError(
                    f"traffic weights add up to {total}; they must be >= 0 and add up to 100."
                )
            versions = [v.version for v in self.traffic]
            if len(set(versions)) != len(versions):
                raise ExportError(f"traffic lists a version twice: {versions}.")

    @property
    def k8s_name(self) -> str:
        """The deployment name as a Kubernetes object name (leaves room for suffixes)."""
        return dns_name(self.name, max_len=40)

    @property
    def live(self) -> list[Variant]:
        """Versions that receive traffic: the split, or this version alone at 100 %."""
        live = self.traffic or [Variant(self.version, self.bento_tag, self.image, 100)]
        return sorted(live, key=lambda v: v.version)

    @property
    def newest(self) -> Variant:
        """The newest live version (the canary in a split)."""
        return self.live[-1]


@dataclass
class Exported:
    """What one target wrote: files with a one-line description, next commands, notes."""

    files: list[tuple[Path, str]] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    ok: bool = True  # False: files are written but a step failed (the notes say which)
    commands_from: str = "this folder"

    def add(self, path: Path, description: str) -> Path:
        """Record a written file and return it."""
        self.files.append((path, description))
        return path


Exporter = Callable[[ExportSpec, Path], Exported]

_BUILTIN: dict[str, str] = {
    "docker": "nbdeploy.package.export_docker:export_docker",
    "k8s": "nbdeploy.package.export_k8s:export_k8s",
    "kserve": "nbdeploy.package.export_kserve:export_kserve",
    "github-actions": "nbdeploy.package.export_gha:export_gha",
}
_ALIASES = {"kubernetes": "k8s", "gha": "github-actions", "oci": "docker"}
_REGISTERED: dict[str, Exporter | str] = {}


def register_target(name: str, exporter: Exporter | str) -> None:
    """Add (or replace) an export target: a callable or a ``"module:function"`` string."""
    _REGISTERED[name] = exporter


def _targets() -> dict[str, Exporter | str]:
    """Built-in targets, then entry points, then explicit registrations."""
    targets: dict[str, Exporter | str] = dict(_BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        targets[ep.name] = ep.value
    targets.update(_REGISTERED)
    return targets


def available_targets() -> list[str]:
    """Names accepted by :func:`export`."""
    return sorted(_targets())


def _resolve(target: str) -> Exporter:
    """Find the exporter for a target name, importing its module on first use."""
    targets = _targets()
    key = _ALIASES.get(target, target)
    if key not in targets:
        raise ExportError(
            f"Unknown export target {target!r}. Choose one of: {', '.join(sorted(targets))}."
        )
    exporter = targets[key]
    if isinstance(exporter, str):
        module, _, attr = exporter.partition(":")
        exporter = getattr(importlib.import_module(module), attr)
    return exporter


def export(
    spec: ExportSpec,
    to: Path,
    target: str,
    *,
    echo: Callable[[str], None] | None = print,
) -> list[Path]:
    """Write ``target``'s files for ``spec`` into ``to`` and index them in ``EXPORT.md``."""
    to = Path(to)
    exporter = _resolve(target)
    to.mkdir(parents=True, exist_ok=True)
    result = exporter(spec, to)
    index = write_index(to, _ALIASES.get(target, target), spec, result)
    if not result.ok:
        raise ExportError("\n".join(result.notes))
    if echo is not None:
        for note in result.notes:
            echo(note)
    return [path for path, _ in result.files] + [index]


_SECTION = re.compile(
    r"<!-- nbdeploy-target: (?P<name>[\w.-]+) -->\n(?P<body>.*?)<!-- /nbdeploy-target -->\n",
    re.S,
)


def write_index(to: Path, target: str, spec: ExportSpec, result: Exported) -> Path:
    """Write or update ``EXPORT.md``: one section per target, others kept as they were."""
    index = to / INDEX_FILE
    stamp = f"<!-- nbdeploy-export: {spec.bento_tag} v{spec.version} -->"
    sections: dict[str, str] = {}
    if index.exists() and stamp in (text := index.read_text()):  # same export: keep others
        sections = {m["name"]: m["body"] for m in _SECTION.finditer(text)}
    lines = [f"## {target}", ""]
    lines += ["| file | what it is |", "|---|---|"]
    for path, description in result.files:
        rel = path.relative_to(to) if path.is_relative_to(to) else path
        lines.append(f"| `{rel}` | {description} |")
    if result.commands:
        lines += ["", f"Next, from {result.commands_from}:", "", "```bash", *result.commands, "```"]
    if result.notes:
        lines += ["", *[f"> {note}" for note in result.notes]]
    sections[target] = "\n".join(lines) + "\n\n"
    head = [
        stamp,
        f"# Export of `{spec.name}` version {spec.version}",
        "",
        f"Written by nbdeploy from bento `{spec.bento_tag}` (image `{spec.image}`).",
        "Nothing here holds a secret: the API key is read from the Kubernetes Secret "
        f"`{spec.api_key_secret}` (key `NBDEPLOY_API_KEY`), which you create yourself.",
        "",
    ]
    body = "".join(
        f"<!-- nbdeploy-target: {name} -->\n{sections[name]}<!-- /nbdeploy-target -->\n"
        for name in sorted(sections)
    )
    index.write_text("\n".join(head) + "\n" + body)
    return index


class _Dumper(yaml.SafeDumper):
    """YAML dumper that keeps key order, never writes anchors, writes multi-line blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str_representer(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str_representer)


def dump_yaml(docs: Sequence[dict[str, Any]] | dict[str, Any], header: str = "") -> str:
    """Serialise one or several documents (``---`` separated), with an optional comment."""
    if isinstance(docs, dict):
        docs = [docs]
    text = yaml.dump_all(docs, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100)
    comment = "".join(f"# {line}\n".replace("# \n", "#\n") for line in header.splitlines())
    return comment + text
