"""``nbdeploy validate``: run validation notebooks from the command line or CI."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

import click

__all__ = ["validate"]


def _params(values: tuple[str, ...]) -> dict[str, Any]:
    from nbdeploy.validate.batch import parse_param

    out = {}
    for item in values:
        try:
            key, value = parse_param(item)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="-p") from None
        out[key] = value
    return out


def _grid(values: tuple[str, ...]) -> dict[str, list[Any]]:
    from nbdeploy.validate.batch import parse_grid

    out = {}
    for item in values:
        try:
            key, axis = parse_grid(item)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--grid") from None
        out[key] = axis
    return out


def _model_params(ref: str) -> dict[str, Any]:
    """Ask the core which model, tag and endpoint ``NAME[:VERSION]`` means."""
    try:
        from nbdeploy.api import validation_params
    except ImportError as exc:  # pragma: no cover - the core ships with nbdeploy
        raise click.ClickException(f"--model needs nbdeploy.api.validation_params: {exc}") from None
    try:
        return dict(validation_params(ref))
    except (LookupError, ValueError) as exc:
        raise click.BadParameter(str(exc), param_hint="--model") from None
    except Exception as exc:
        raise click.ClickException(f"could not resolve model {ref!r}: {exc}") from None


def _default_out() -> Path:
    from nbdeploy.config import runs_dir

    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    return runs_dir() / "validate" / stamp


@click.command("validate")
@click.argument(
    "notebooks",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
@click.option("--model", "model_ref", metavar="NAME[:VERSION]",
              help="Inject model_name, model_version, model_tag and endpoint of this model.")
@click.option("-p", "--param", "param_items", multiple=True, metavar="KEY=VALUE",
              help="A notebook parameter (typed: 3, 0.5, true, null, text). Repeatable.")
@click.option("--grid", "grid_items", multiple=True, metavar="KEY=V1,V2",
              help="Run once per value; several --grid options multiply. Repeatable.")
@click.option("--parallel", default=1, show_default=True, type=click.IntRange(min=1),
              help="How many kernels run at once.")
@click.option("--timeout", default=600.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds a single cell may run (0: no limit).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the executed notebooks [default: a new folder under "
              "$NBDEPLOY_HOME/runs/validate].")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the HTML report [default: OUT/report.html].")
@click.option("--require", "require_items", multiple=True, metavar="METRIC>=VALUE",
              help="A condition on a recorded metric (>=, >, <=, <, ==, !=). Repeatable.")
@click.option("--kernel", "kernel_name", metavar="NAME",
              help="Jupyter kernel to run the notebooks with [default: each notebook's own].")
def validate(
    notebooks: tuple[Path, ...],
    model_ref: str | None,
    param_items: tuple[str, ...],
    grid_items: tuple[str, ...],
    parallel: int,
    timeout: float,
    out_dir: Path | None,
    report_path: Path | None,
    require_items: tuple[str, ...],
    kernel_name: str | None,
) -> None:
    """Run validation NOTEBOOKS (with papermill) and fail when one fails.

    \b
    Examples:
      nbdeploy validate checks/quality.ipynb --model churn:3 --require "auc>=0.95"
      nbdeploy validate a.ipynb b.ipynb -p threshold=0.8 --grid seed=0,1,2 --parallel 2

    Each notebook needs a cell tagged `parameters`; nbdeploy injects model_name,
    model_version, model_tag and endpoint (with --model) and your -p/--grid values
    after it. A notebook records metrics with nbdeploy.record("auc", 0.97) and
    fails by raising (e.g. assert auc > threshold).

    Exit status: 0 when every run passed and every --require held, 1 otherwise,
    2 for a usage error.
    """
    from nbdeploy.validate.batch import expand_grid, run_batch
    from nbdeploy.validate.report import write_html_report
    from nbdeploy.validate.requirements import parse_requirements

    params = _params(param_items)
    grid = _grid(grid_items)
    try:
        expand_grid(params, grid)
        requirements = parse_requirements(require_items)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if model_ref:
        params = {**_model_params(model_ref), **params}
    out = out_dir or _default_out()
    total = len(notebooks) * len(expand_grid(params, grid))
    click.echo(f"validating {total} run(s), {parallel} at a time; notebooks -> {out}", err=True)
    result = run_batch(
        list(notebooks),
        params=params,
        grid=grid,
        parallel=parallel,
        timeout=timeout or None,
        out_dir=out,
        progress=True,
        kernel_name=kernel_name,
        require=requirements,
    )
    click.echo(result.summary_table())
    warnings = dict.fromkeys(w for run in result.results for w in run.warnings)
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    report = write_html_report(result, report_path or out / "report.html")
    click.echo(f"report: {report}")
    click.get_current_context().exit(0 if result.ok else 1)


if __name__ == "__main__":  # python -m nbdeploy.validate.cli, before the main CLI is wired
    validate()
