"""``nbdeploy`` commands for the lifecycle: promote, rollback, diff, drift, audit, export."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.table import Table

from nbdeploy import api
from nbdeploy.cli import cli, console, friendly, when
from nbdeploy.errors import NbdeployError
from nbdeploy.registry import Registry


def _say(stage: str, message: str) -> None:
    console.print(f"[dim]{stage}[/dim] {message}")


@cli.command()
@click.argument("ref", metavar="NAME:VERSION")
@friendly
def promote(ref: str) -> None:
    """Make NAME:VERSION the serving version (it must have passed its gate)."""
    name, version = api.parse_ref(ref)
    if version is None:
        raise click.UsageError("promote needs NAME:VERSION, e.g. nbdeploy promote iris:3")
    row = Registry().version(name, version)
    if row["status"] not in ("ready", "serving"):
        raise NbdeployError(f"{ref} is {row['status']} ({row.get('reason') or 'no reason'}); "
                            "only a version that passed its gate can serve.")
    dep = api.promote(name, version, progress=_say)
    console.print(f"[green]{name} v{dep.version} is serving[/green] at {dep.url}")


@cli.command()
@click.argument("name")
@click.option("--to", "to", type=int, metavar="VERSION",
              help="Version to go back to (default: the one served before the current one).")
@friendly
def rollback(name: str, to: int | None) -> None:
    """Serve again the version that served before the current one, in one step, on the same
    stable URL (clients see no failed request).

    "Before" follows the promotion history, not version numbers; each further rollback steps
    one more back. Versions rejected since are skipped.

    \b
    Examples:
      nbdeploy rollback iris          back to the version served before the current one
      nbdeploy rollback iris --to 2   serve v2 (it must have passed its gate)"""
    dep = api.rollback(name, to, progress=_say)
    console.print(f"[green]{name} rolled back: v{dep.version} is serving[/green] at {dep.url}")


@cli.command()
@click.argument("a", metavar="NAME:V1")
@click.argument("b", metavar="NAME:V2")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@friendly
def diff(a: str, b: str, as_json: bool) -> None:
    """Show what differs between two versions: schema, pins, metrics, lineage."""
    from nbdeploy.lifecycle import diff as compute

    d = compute(a, b)
    if as_json:
        click.echo(json.dumps(d, indent=2, default=str))
        return
    console.print(f"[bold]{d['a']} → {d['b']}[/bold]")
    s = d["schema"]
    console.print("schema: " + ("unchanged" if not any(s.values()) else
                                f"added {s['added']} removed {s['removed']} changed {s['changed']}"))
    for title, key in (("pins", "pins"), ("validation metrics", "metrics"), ("lineage", "lineage"),
                       ("model", "other")):
        rows = d[key]
        if not rows:
            console.print(f"{title}: unchanged")
            continue
        table = Table("", d["a"], d["b"], title=title)
        for column in table.columns:  # long paths and hashes wrap, never end in "…"
            column.overflow = "fold"
        for k, (va, vb) in rows.items():
            table.add_row(k, str(va), str(vb))
        console.print(table)


@cli.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print every event as JSON (for export or SIEM).")
@click.option("-n", "--last", type=int, help="Only the last N events.")
@friendly
def audit(name: str | None, as_json: bool, last: int | None) -> None:
    """The append-only audit log: who did what, when, from which notebook."""
    events = Registry().events(name, limit=last)
    if as_json:
        click.echo(json.dumps(events, indent=2, default=str))
        return
    table = Table("when", "user", "action", "deployment", "notebook", "detail")
    for e in events:
        table.add_row(when(e["ts"]), e["user"], e["action"],
                      f"{e['name'] or ''}{':' + str(e['version']) if e['version'] else ''}",
                      Path(e["notebook"]).name if e["notebook"] else "", json.dumps(e["detail"])[:60])
    console.print(table)


@cli.command()
@click.argument("name")
@click.option("--version", "version", type=int, help="Version (default: the serving one).")
@click.option("--window", default="24h", show_default=True, help="Recent traffic to compare: 30m, 24h, 7d.")
@click.option("--psi", "psi_threshold", default=0.2, show_default=True, help="PSI above this is drift.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@friendly
def drift(name: str, version: int | None, window: str, psi_threshold: float, as_json: bool) -> None:
    """Compare recent traffic with the version's reference sample, feature by feature.

    Exits 1 when drift passes the threshold, 0 otherwise (for cron and CI):

    \b
      nbdeploy drift iris --window 24h || notify-team"""
    from nbdeploy import monitoring

    try:
        report = monitoring.drift(name, version, window=window, psi_threshold=psi_threshold)
    except ValueError as exc:
        raise NbdeployError(str(exc)) from None
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        table = Table("feature", "kind", "PSI", "test", "p-value", "drift", "why")
        for f in report.features_sorted():
            table.add_row(f.name, f.kind, monitoring.fmt(f.psi, ".3f"), f.test,
                          monitoring.fmt(f.p_value, ".3g"), "[red]yes[/red]" if f.drifted else "no",
                          f.reason)
        console.print(table)
        console.print(f"verdict: [bold]{report.verdict}[/bold]")
    if report.verdict == "drift":
        sys.exit(1)


@cli.command("export")
@click.argument("ref", metavar="NAME[:VERSION]")
@click.option("--to", "to", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write into.")
@click.option("--target", required=True, help="docker, k8s, kserve or github-actions.")
@click.option("--image", help="OCI image reference to put in the manifests (default NAME:vVERSION).")
@friendly
def export_cmd(ref: str, to: Path, target: str, image: str | None) -> None:
    """Export a version for production: a Docker build context, Kubernetes or KServe manifests,
    or a GitHub Actions workflow that validates then builds.

    \b
    Examples:
      nbdeploy export iris --target docker --to build/
      nbdeploy export iris:3 --target k8s --to deploy/k8s --image registry.example.com/iris:3"""
    from nbdeploy.lifecycle import export_spec
    from nbdeploy.package.export import ExportError, export

    try:
        paths = export(export_spec(ref, image=image), to, target, echo=lambda m: console.print(m))
    except ExportError as exc:
        raise NbdeployError(str(exc)) from None
    console.print(f"[green]wrote {len(paths)} file(s)[/green] to {to} — see {to}/EXPORT.md")
