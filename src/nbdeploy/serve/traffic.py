"""The routing table: which version answers a request (weights, sticky keys) and which shadows it.

Pure code, no I/O: the router process builds a ``RoutingTable`` from registry rows and asks it
for a version per request. A request key (e.g. a user id) hashes to a fixed point in [0, 1), so
the same key always lands on the same version while the weights stay the same; requests
without a key are spread by weighted random choice.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nbdeploy.errors import NbdeployError

MAX_KEY_CHARS = 256


class SplitError(NbdeployError, ValueError):
    """A traffic split or shadow setting that cannot be used; the message says how to fix it."""


def _version_number(raw: Any) -> int:
    """``3``, ``"3"`` or ``"v3"`` → 3."""
    if isinstance(raw, bool):
        raise SplitError(f"split version {raw!r} is not a version number; write e.g. {{3: 90, 4: 10}}.")
    if isinstance(raw, int):
        number = raw
    elif isinstance(raw, str) and raw.strip().lstrip("vV").isdigit():
        number = int(raw.strip().lstrip("vV"))
    else:
        raise SplitError(f"split version {raw!r} is not a version number; write e.g. {{3: 90, 4: 10}}.")
    if number < 1:
        raise SplitError(f"split version {number} does not exist; versions count from 1.")
    return number


def normalize_split(weights: Mapping[Any, Any] | None) -> dict[int, int]:
    """Check a split ``{version: percent}`` and return it with int keys; ``{}`` means no split.

    Weights are whole percentages >= 0 that add up to 100 (the same rule as the Kubernetes
    export), and at least one version must get traffic."""
    if not weights:
        return {}
    if not isinstance(weights, Mapping):
        raise SplitError(f"a split is a mapping {{version: percent}}, got {type(weights).__name__}.")
    out: dict[int, int] = {}
    for raw_version, raw_weight in weights.items():
        version = _version_number(raw_version)
        if version in out:
            raise SplitError(f"the split lists v{version} twice.")
        if isinstance(raw_weight, bool) or not isinstance(raw_weight, (int, float)):
            raise SplitError(f"the weight of v{version} is {raw_weight!r}; use a whole percentage 0-100.")
        if raw_weight != int(raw_weight) or not 0 <= raw_weight <= 100:
            raise SplitError(f"the weight of v{version} is {raw_weight!r}; use a whole percentage 0-100.")
        out[version] = int(raw_weight)
    total = sum(out.values())
    if total != 100:
        raise SplitError(
            f"split weights add up to {total}; they must add up to 100 (e.g. {{3: 90, 4: 10}})."
        )
    return dict(sorted(out.items()))


def check_key(key: str | None) -> str | None:
    """A sticky routing key as given, or ``SplitError`` if it is too long to be an id."""
    if key is None or key == "":
        return None
    if len(key) > MAX_KEY_CHARS:
        raise SplitError(f"the routing key is {len(key)} characters long; keep it under {MAX_KEY_CHARS}.")
    return key


def key_point(key: str) -> float:
    """Where a routing key falls in [0, 1): the same key gives the same point in every process."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def pick(weights: tuple[tuple[int, int], ...], point: float) -> int:
    """The version whose cumulative-weight interval holds ``point`` (in [0, 1))."""
    total = sum(w for _, w in weights)
    target = point * total
    running = 0
    for version, weight in weights:
        running += weight
        if target < running:
            return version
    return weights[-1][0]


@dataclass(frozen=True)
class RoutingTable:
    """A snapshot of one deployment's routes: serving version, split, shadow, server URLs."""

    name: str
    serving: int | None = None
    split: tuple[tuple[int, int], ...] = ()  # (version, weight > 0), by version
    shadow: int | None = None
    urls: Mapping[int, str] = field(default_factory=dict)  # running versions only
    generation: int = 0

    def choose(self, key: str | None = None, rand: float | None = None) -> int | None:
        """The version for one request: sticky by ``key``, else weighted by ``rand`` (or random)."""
        if not self.split:
            return self.serving
        if len(self.split) == 1:
            return self.split[0][0]
        point = key_point(key) if key else (random.random() if rand is None else rand)
        return pick(self.split, point)

    def shadow_for(self, primary: int | None) -> int | None:
        """The version that mirrors a request answered by ``primary`` (never itself)."""
        if self.shadow is None or self.shadow == primary:
            return None
        return self.shadow

    def url(self, version: int | None) -> str | None:
        """Base URL of a running version's server, or None when it is not running."""
        return None if version is None else self.urls.get(version)

    def same_routes(self, other: RoutingTable | None) -> bool:
        """True when ``other`` routes exactly like this table (generation aside)."""
        return other is not None and (
            (self.serving, self.split, self.shadow, dict(self.urls))
            == (other.serving, other.split, other.shadow, dict(other.urls))
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what the router's ``/_nbdeploy/routes`` shows)."""
        return {
            "name": self.name,
            "generation": self.generation,
            "serving": self.serving,
            "split": {str(v): w for v, w in self.split},
            "shadow": self.shadow,
            "urls": {str(v): u for v, u in sorted(self.urls.items())},
        }


def _loopback(host: str | None) -> str:
    return "127.0.0.1" if host in (None, "", "0.0.0.0") else str(host)


def table_from_rows(
    name: str,
    deployment: Mapping[str, Any] | None,
    versions: list[Mapping[str, Any]],
    generation: int = 0,
) -> RoutingTable:
    """Build a table from a ``deployments`` row and ``versions`` rows (pid/host/port columns).

    A version counts as running when its row has a pid and a port (``https`` when its ``tls``
    column is set); a split stored with string
    keys (as JSON keeps them) is read back as ints, zero weights dropped."""
    if deployment is None:
        return RoutingTable(name=name, generation=generation)
    raw = deployment.get("split")
    if raw is None and deployment.get("split_json"):
        raw = json.loads(deployment["split_json"])
    try:
        split = normalize_split(raw)
    except SplitError:
        split = {}  # a hand-edited, invalid split must not take the endpoint down
    urls = {
        int(row["version"]): f"{'https' if row.get('tls') else 'http'}://"
                             f"{_loopback(row.get('host'))}:{int(row['port'])}"
        for row in versions
        if row.get("pid") and row.get("port")
    }
    serving = deployment.get("serving_version")
    shadow = deployment.get("shadow_version")
    return RoutingTable(
        name=name,
        serving=int(serving) if serving is not None else None,
        split=tuple((v, w) for v, w in split.items() if w > 0),
        shadow=int(shadow) if shadow is not None else None,
        urls=urls,
        generation=generation,
    )
