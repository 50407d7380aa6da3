"""``%deploy``, ``%%deploy`` and ``%deployments``: IPython magics over nbdeploy.api."""

from __future__ import annotations

import difflib
import shlex
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring


def _value(text: str) -> Any:
    from nbdeploy.validate.batch import parse_value

    return parse_value(text)


def _pairs(items: list[str] | None, flag: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag} takes KEY=VALUE, got {item!r}")
        out[key.strip()] = _value(value.strip())
    return out


def _requirements(items: list[str] | None) -> dict[str, str]:
    import re

    out = {}
    for item in items or []:
        m = re.match(r"^\s*([A-Za-z_][\w.-]*)\s*(>=|<=|==|!=|>|<)\s*(.+)$", item)
        if not m:
            raise UsageError(f"--require takes METRIC OP VALUE such as auc>=0.95, got {item!r}")
        out[m.group(1)] = f"{m.group(2)}{m.group(3).strip()}"
    return out


def default_name(var: str) -> str:
    """A valid deployment name from a variable expression: ``pipe.best_estimator_`` ->
    ``pipe-best-estimator``, ``models["rf"]`` -> ``models-rf``."""
    import re

    return re.sub(r"[^a-z0-9]+", "-", var.lower()).strip("-")[:63].strip("-") or "model"


@magics_class
class DeployMagics(Magics):
    """Deploy models from the notebook namespace."""

    def _lookup(self, var: str, what: str) -> Any:
        ns = self.shell.user_ns
        if var in ns:
            return ns[var]
        if "." in var or "[" in var:
            try:
                return eval(var, ns)  # attribute access like pipe.best_estimator_
            except Exception as exc:
                raise UsageError(f"could not evaluate {what} {var!r}: {exc}") from None
        names = [k for k in ns if not k.startswith("_")]
        close = difflib.get_close_matches(var, names, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UsageError(f"no variable named {var!r} in the notebook ({what}).{hint}")

    @magic_arguments()
    @argument("model", help="Name of the variable holding the fitted model (or a function).")
    @argument("--name", "-n", help="Deployment name (default: the variable name, e.g. my-model).")
    @argument("--sample", "-s",
              help="Variable holding sample input rows (DataFrame/array): gives the schema.")
    @argument("--validate", nargs="+", metavar="NOTEBOOK", help="Validation notebooks gating the deploy.")
    @argument("-p", "--param", action="append", metavar="KEY=VALUE", help="Parameter for the notebooks.")
    @argument("--require", action="append", metavar="METRIC>=VALUE", help="Metric the notebooks must meet.")
    @argument("--require-better", action="append", metavar="METRIC",
              help="Reject the candidate unless it beats the serving version on METRIC.")
    @argument("--explain", action="store_true", help="Show SHAP explanations once deployed.")
    @argument("--port", type=int, help="Serve on this port (default: a free one).")
    @argument("--format", "-f", default="auto", choices=["auto", "skops"],
              help="How the model is saved: the framework's own format (auto) or skops (scikit-learn).")
    @argument("--no-serve", action="store_true", help="Build and register only; do not start a server.")
    @argument("--wait", action="store_true", help="Block until done (for scripts and papermill runs).")
    @line_magic
    def deploy(self, line: str) -> Any:
        """Deploy MODEL as a versioned BentoML service, in the background, with a live panel.

        Example: %deploy model --name iris --sample X_train --validate checks.ipynb --require accuracy>=0.9
        """
        try:
            args = parse_argstring(self.deploy, line)
        except UsageError:
            raise
        except SystemExit:  # argparse's --help / bad option
            raise UsageError("see %deploy? for the options") from None
        return self._deploy(args)

    @cell_magic("deploy")
    def deploy_cell(self, line: str, cell: str) -> Any:
        """%%deploy MODEL, then one option per line (same options as %deploy)."""
        extra = " ".join(
            " ".join(shlex.quote(tok) for tok in shlex.split(ln))
            for ln in cell.splitlines() if ln.strip() and not ln.strip().startswith("#")
        )
        return self.deploy(f"{line} {extra}")

    def _deploy(self, args: Any) -> Any:
        from nbdeploy.notebook.jobs import DeployJob
        from nbdeploy.notebook.panel import DeploymentPanel
        from nbdeploy.refs import check_name

        model = self._lookup(args.model, "model")
        if args.sample is None:
            raise UsageError(
                "--sample is required: give the variable with training rows, e.g. "
                f"%deploy {args.model} --sample X_train (it defines the input schema)."
            )
        sample = self._lookup(args.sample, "sample")
        name = args.name or default_name(args.model)
        try:
            check_name(name)
            from nbdeploy.capture import adapter_for

            adapter_for(model)  # unsupported objects fail here, in one line
            if args.format == "skops":  # nbdeploy.api is a heavy import: only for this check
                from nbdeploy.api import _choose_adapter

                _choose_adapter(model, args.format)
        except Exception as exc:
            raise UsageError(str(exc)) from None
        options = {
            "validate": args.validate, "require": _requirements(args.require),
            "require_better": args.require_better or [], "params": _pairs(args.param, "-p"),
            "serve": not args.no_serve, "port": args.port, "format": args.format,
        }

        def run(progress: Any, model: Any = model, sample: Any = sample) -> Any:
            from nbdeploy import api

            dep = api.deploy(model, name, sample, progress=progress, **options)
            if args.explain:
                panel.explain.compute()
                panel.tabs.selected_index = 2
            return dep

        def redeploy() -> Any:
            fresh_model = self._lookup(args.model, "model")
            fresh_sample = self._lookup(args.sample, "sample")
            return run(panel.on_progress, fresh_model, fresh_sample)

        panel = DeploymentPanel(name, redeploy=redeploy)
        job = DeployJob(name, run, panel).start()
        if args.wait:
            job.thread.join()
        return panel

    @line_magic
    def deployments(self, line: str) -> Any:
        """List every deployment as a table."""
        import pandas as pd

        from nbdeploy import api

        rows = api.deployments()
        if not rows:
            print("Nothing deployed yet: %deploy MODEL --name NAME --sample X")
            return None
        cols = ["name", "version", "status", "endpoint", "framework", "task", "created_by"]
        return pd.DataFrame(rows)[cols].set_index("name")
