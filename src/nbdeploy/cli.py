"""The ``nbdeploy`` command: inspect, serve and query deployments from a terminal or CI.

Thin over nbdeploy.api; every error is one clear line and a non-zero exit code."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from nbdeploy import api
from nbdeploy.errors import NbdeployError
from nbdeploy.registry import Registry

# Full-width tables when piped (CI logs, grep); the terminal's width otherwise.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)

STATUS_STYLE = {
    "serving": "bold green", "ready": "cyan", "starting": "yellow", "candidate": "yellow",
    "down": "bold red", "failed": "red", "rejected": "red", "interrupted": "red", "stopped": "dim",
}


def friendly(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn nbdeploy's user errors into one red line and exit code 1."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except NbdeployError as exc:
            console.print(f"[red]error:[/red] {exc}")
            sys.exit(1)

    return wrapper


def when(ts: float | None) -> str:
    """Epoch seconds as local 'YYYY-MM-DD HH:MM'."""
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M") if ts else "—"


def badge(status: str) -> str:
    style = STATUS_STYLE.get(status, "")
    return f"[{style}]{status}[/{style}]" if style else status


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nbdeploy")
def cli() -> None:
    """Deploy models from notebooks as versioned, validated BentoML services.

    \b
    Typical session:
      nbdeploy list                      every deployment, its version and status
      nbdeploy show iris                 versions, schema, pins and lineage of one
      nbdeploy predict iris --json '[{"sepal length (cm)": 5.1, ...}]'
      nbdeploy serve iris                (re)start its server after a reboot
      nbdeploy stop iris

    State lives in $NBDEPLOY_HOME (default ~/.nbdeploy); models and bentos in BentoML's
    store ($BENTOML_HOME)."""


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@friendly
def list_cmd(as_json: bool) -> None:
    """List every deployment with its serving version, status and endpoint."""
    rows = api.deployments()
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        console.print("Nothing deployed yet. In a notebook: [bold]%load_ext nbdeploy[/bold] then "
                      "[bold]%deploy model --name NAME --sample X[/bold].")
        return
    table = Table("name", "version", "status", "endpoint", "framework", "task", "deployed")
    for r in rows:
        table.add_row(r["name"], f"v{r['version']}", badge(r["status"]), r["endpoint"] or "—",
                      r["framework"], r["task"], when(r["created_at"]))
    console.print(table)


@cli.command()
@click.argument("ref", metavar="NAME[:VERSION]")
@click.option("--json", "as_json", is_flag=True, help="Print the version record as JSON.")
@friendly
def show(ref: str, as_json: bool) -> None:
    """Show one deployment: its versions, or one version's schema, pins and lineage."""
    name, version = api.parse_ref(ref)
    reg = Registry()
    if version is None and not as_json:
        dep = reg.deployment(name)
        table = Table("version", "state", "framework", "created", "by", "reason", title=f"{name}")
        for v in reg.versions(name):
            mark = " ◀ serving" if v["version"] == dep["serving_version"] else ""
            table.add_row(f"v{v['version']}{mark}", badge(v["status"]), v["framework"],
                          when(v["created_at"]), v["created_by"], v.get("reason") or "")
        console.print(table)
        version = dep["serving_version"]
        if version is None:
            return
    row = reg.version(name, version)
    if as_json:
        click.echo(json.dumps(row, indent=2, default=str))
        return
    d = api.get(f"{name}:{row['version']}")
    console.print(f"\n[bold]{name} v{row['version']}[/bold]  {badge(d.status())}  {d.url or ''}")
    console.print(f"bento {row['bento_tag']}   model {row['model_tag']}   "
                  f"sha256 {row['artifact_sha256'][:16]}…")
    schema = Table("column", "type", "nulls", "allowed values", title="input schema")
    for c in row["schema"]["columns"]:
        cats = ", ".join(map(str, (c.get("categories") or [])[:6]))
        schema.add_row(c["name"], c["dtype"], "allowed" if c["nullable"] else "refused", cats)
    console.print(schema)
    pins = " ".join(f"{k}=={v}" for k, v in sorted(row["pins"].items()))
    console.print(f"[bold]pins[/bold] (python {row['python_version']}): {pins}")
    lin = row.get("lineage") or {}
    console.print(f"[bold]lineage[/bold]: notebook {lin.get('notebook') or '—'}  "
                  f"sha256 {(lin.get('notebook_sha256') or '—')[:16]}  "
                  f"git {(lin.get('git_commit') or '—')[:12]}  data {str(lin.get('data_fingerprint'))[:12]} "
                  f"({lin.get('data_rows')} rows)")
    console.print(f"[bold]deployed by[/bold] {row.get('created_by') or lin.get('user') or '—'} "
                  f"on {when(row.get('created_at') or lin.get('created_at'))}")
    runs = reg.validation_runs(name, row["version"])
    if runs:
        vt = Table("notebook", "role", "status", "metrics", "reason", title="validation")
        for r in runs:
            metrics = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                for k, v in r["metrics"].items())
            vt.add_row(Path(r["notebook"]).name, r["role"], badge(r["status"]), metrics,
                       r.get("reason") or "")
        console.print(vt)


@cli.command()
@click.argument("ref", metavar="NAME[:VERSION]")
@click.option("--port", type=int, help="Port to serve on (default: the last one, or a free one).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; a non-loopback one needs $NBDEPLOY_API_KEY (or gets a key shown once).")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="PEM certificate: serve HTTPS (needs --tls-key).")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="PEM private key of --tls-cert.")
@friendly
def serve(ref: str, port: int | None, host: str, tls_cert: Path | None, tls_key: Path | None) -> None:
    """Start (or restart) the server of a deployment; by default its serving version.

    \b
    Examples:
      nbdeploy serve iris
      nbdeploy serve iris --host 0.0.0.0 --tls-cert cert.pem --tls-key key.pem"""
    name, version = api.parse_ref(ref)
    dep = api.start(name, version, port=port, host=host, tls_cert=tls_cert, tls_key=tls_key,
                    progress=lambda s, m: console.print(f"[dim]{s}[/dim] {m}"))
    console.print(f"[green]serving[/green] {name} v{dep.version} at {dep.url}")


@cli.command()
@click.argument("ref", metavar="NAME[:VERSION]")
@friendly
def stop(ref: str) -> None:
    """Stop the server of a deployment (by default its serving version)."""
    name, version = api.parse_ref(ref)
    if api.stop(name, version):
        console.print(f"stopped {ref}")
    else:
        console.print(f"{ref} was not running")


@cli.command()
@click.argument("ref", metavar="NAME[:VERSION]", required=False)
@friendly
def status(ref: str | None) -> None:
    """Probe the live server(s): serving, starting, down (process died) or stopped.

    Exits 1 when a deployment that should serve is down, so cron or CI can alert."""
    from nbdeploy import monitoring

    rows = [api.get(ref).summary()] if ref else api.deployments()
    table = Table("name", "version", "status", "pid", "endpoint", "alerts")
    bad = False
    firing = []
    for r in rows:
        try:
            fired = monitoring.alerts(r["name"])
        except Exception as exc:  # monitoring must never hide the server status
            fired, note = [], f"[dim]unavailable: {exc}[/dim]"
        else:
            note = f"[red]{len(fired)} firing[/red]" if fired else "—"
        firing += fired
        table.add_row(r["name"], f"v{r['version']}", badge(r["status"]), str(r["pid"] or "—"),
                      r["endpoint"] or "—", note)
        bad = bad or r["status"] == "down"
    console.print(table)
    for alert in firing:
        console.print(f"[red]{alert.severity}[/red] {alert.message}")
    if bad:
        console.print("[red]a server is down[/red]: restart it with [bold]nbdeploy serve NAME[/bold]")
        sys.exit(1)


@cli.command()
@click.argument("ref", metavar="NAME[:VERSION]")
@click.option("-n", "--lines", default=50, show_default=True, help="How many lines.")
@friendly
def logs(ref: str, lines: int) -> None:
    """Print the last lines of a version's server log."""
    click.echo(api.get(ref).logs(lines) or f"(no log yet for {ref})")


@cli.command()
@click.argument("ref", metavar="NAME[:VERSION]")
@click.option("--json", "json_rows", metavar="JSON", help="Rows as JSON: a list of objects, or one object.")
@click.option("--csv", "csv_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Rows from a CSV file with a header line.")
@click.option("--proba", is_flag=True, help="Class probabilities instead of labels (classifiers).")
@friendly
def predict(ref: str, json_rows: str | None, csv_path: Path | None, proba: bool) -> None:
    """Send rows to the live endpoint and print the predictions.

    \b
    Examples:
      nbdeploy predict iris --json '{"sepal length (cm)": 5.1, "sepal width (cm)": 3.5,
                                     "petal length (cm)": 1.4, "petal width (cm)": 0.2}'
      nbdeploy predict iris --csv new_flowers.csv --proba"""
    if bool(json_rows) == bool(csv_path):
        raise click.UsageError("give the rows with exactly one of --json or --csv")
    if json_rows:
        try:
            rows = json.loads(json_rows)
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--json") from None
    else:
        import pandas as pd

        rows = pd.read_csv(csv_path)
    dep = api.get(ref)
    if dep.status() != "serving":
        raise NbdeployError(f"{ref} is {dep.status()}; start it with `nbdeploy serve {ref}`.")
    try:
        out = dep.predict_proba(rows) if proba else dep.predict(rows)
    except RuntimeError as exc:
        raise NbdeployError(str(exc)) from None
    click.echo(json.dumps(out, indent=None if len(out) > 20 else 2))


def _attach_optional() -> None:
    """Commands that live next to their capability (added when present)."""
    try:
        from nbdeploy.validate.cli import validate

        cli.add_command(validate)
    except ImportError:  # pragma: no cover
        pass


_attach_optional()


def main() -> None:
    """Entry point of the ``nbdeploy`` script."""
    cli(prog_name="nbdeploy")


if __name__ == "__main__":
    main()


from nbdeploy import cli_ops, cli_traffic  # noqa: E402,F401  (register their commands)
