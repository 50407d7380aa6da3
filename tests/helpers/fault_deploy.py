"""Deploy a small model in a child process that a fault test can kill at a chosen stage.

Run: ``python tests/helpers/fault_deploy.py NAME [--c 1.0] [--validate NB] [--no-serve]``
with ``NBDEPLOY_HOME`` / ``BENTOML_HOME`` set by the test. Every progress callback of
``api.deploy`` is printed as ``STAGE <stage> <message>`` (flushed), and the outcome as
``DONE <version> <status>`` or ``ERROR <type> <message>``.

Hooks, set through the environment:

- ``FAULT_STALL_AT=<point>`` stops (sleeps) at that point after printing ``STALLED <point>``, so
  the test kills the process exactly there. Points: any progress stage (``capturing``,
  ``building``, ``starting``, ``validating``), ``bento-build`` (model saved, bento sources
  written, inside ``build_bento``) and ``registered`` (right after the version row was
  committed, before anything serves it).
- ``FAULT_BARRIER=<folder>`` with ``FAULT_PARTIES=<n>``: wait, right before the version number
  is allocated, until ``n`` processes reached that point, so concurrent deploys race for real.

``mixed_classifier`` is also imported by the tests: the model the fault and bad-input tests serve.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def say(*parts: object) -> None:
    """One line for the watching test, flushed at once."""
    print(*parts, flush=True)


def stall(point: str) -> None:
    """Sleep for good at ``point`` when FAULT_STALL_AT names it (the test kills us there)."""
    if os.environ.get("FAULT_STALL_AT") == point:
        say("STALLED", point)
        while True:
            time.sleep(60)


def barrier(folder: str, parties: int, timeout: float = 300.0) -> None:
    """Wait until ``parties`` processes have reached this call (a file per process)."""
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    (path / str(os.getpid())).touch()
    deadline = time.monotonic() + timeout
    while len(list(path.iterdir())) < parties:
        if time.monotonic() > deadline:
            raise TimeoutError(f"barrier {folder}: only {len(list(path.iterdir()))} of {parties} arrived")
        time.sleep(0.01)
    say("BARRIER", "passed")


def iris_model(c: float = 1.0) -> tuple[Any, Any]:
    """A logistic regression on iris; a different ``c`` gives a different model (and hash)."""
    from sklearn.linear_model import LogisticRegression

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests import models

    X, y = models.iris()
    return LogisticRegression(C=c, max_iter=500).fit(X, y), X


def mixed_classifier(max_iter: int = 15) -> tuple[Any, Any]:
    """A gradient-boosting pipeline on int, float, category, nullable-string and nullable-float
    columns: every kind of field the generated Row model validates (``max_iter`` varies the model)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests import models

    X, y = models.mixed()
    X = X.assign(score=X["score"].astype("float64"))
    pre = ColumnTransformer([("cat", OneHotEncoder(handle_unknown="ignore"), ["city", "plan"])],
                            remainder="passthrough")
    gb = HistGradientBoostingClassifier(max_iter=max_iter, random_state=0)
    model = Pipeline([("pre", pre), ("gb", gb)])
    return model.fit(X, y), X


def _install_hooks() -> None:
    from nbdeploy import api
    from nbdeploy.registry import Registry

    real_build = api.build.build_bento

    def build_bento(*args: Any, **kwargs: Any) -> Any:
        stall("bento-build")
        return real_build(*args, **kwargs)

    api.build.build_bento = build_bento  # type: ignore[assignment]

    real_add = Registry.add_version

    def add_version(self: Registry, *args: Any, **kwargs: Any) -> int:
        if os.environ.get("FAULT_BARRIER"):
            barrier(os.environ["FAULT_BARRIER"], int(os.environ.get("FAULT_PARTIES", "2")))
        version = real_add(self, *args, **kwargs)
        say("REGISTERED", version)
        stall("registered")
        return version

    Registry.add_version = add_version  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("name")
    parser.add_argument("--c", type=float, default=1.0, help="LogisticRegression C (model identity)")
    parser.add_argument("--validate", action="append", default=None, help="validation notebook")
    parser.add_argument("--no-serve", action="store_true")
    args = parser.parse_args(argv)

    from nbdeploy import api

    _install_hooks()
    model, X = iris_model(args.c)

    def progress(stage: str, message: str) -> None:
        say("STAGE", stage, message.replace("\n", " ")[:300])
        stall(stage)

    try:
        dep = api.deploy(model, args.name, X, validate=args.validate, serve=not args.no_serve,
                         progress=progress)
    except Exception as exc:  # reported to the test, which asserts on it
        say("ERROR", type(exc).__name__, str(exc).replace("\n", " ")[:500])
        return 1
    say("DONE", dep.version, dep.row["status"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
