"""``nbdeploy`` commands for traffic and quality: split, shadow, kpis, alerts, retrain, reproduce."""

from __future__ import annotations

import json
import re
import sys

import click
from rich.table import Table

from nbdeploy import api
from nbdeploy.cli import badge, cli, console, friendly
from nbdeploy.errors import NbdeployError


@cli.command()
@click.argument("name")
@click.argument("weights", nargs=-1, metavar="VERSION=PERCENT...")
@click.option("--off", is_flag=True, help="End the split: the serving version takes all traffic.")
@friendly
def split(name: str, weights: tuple[str, ...], off: bool) -> None:
    """Route shares of NAME's traffic to versions (A/B test or canary) on its stable URL.

    Every answer says which version served it (header X-NBDeploy-Version); requests with the
    same key (header X-NBDeploy-Key or ?key=) always reach the same version.

    \b
    Examples:
      nbdeploy split iris 3=90 4=10     canary: 10 % of requests to v4
      nbdeploy split iris --off         back to the serving version only
      nbdeploy split iris               show the current split"""
    if off:
        api.split(name, {})
        console.print(f"{name}: split ended, v{api.get(name).version} takes all traffic")
        return
    if not weights:
        current = api.get_split(name)
        text = (", ".join(f"v{v} {w}%" for v, w in current.items()) if current
                else f"no split (v{api.get(name).version} takes all traffic)")
        console.print(f"{name}: {text}")
        return
    parsed: dict[int, int] = {}
    for item in weights:
        m = re.fullmatch(r"v?(\d+)=(\d+)%?", item.strip())
        if not m:
            raise click.BadParameter(f"{item!r}: write VERSION=PERCENT, e.g. 3=90", param_hint="WEIGHTS")
        parsed[int(m.group(1))] = int(m.group(2))
    result = api.split(name, parsed)
    console.print(f"[green]{name} split[/green]: " + ", ".join(f"v{v} {w}%" for v, w in result.items()))


@cli.command()
@click.argument("name")
@click.argument("version", type=int, required=False)
@click.option("--off", is_flag=True, help="Stop mirroring.")
@friendly
def shadow(name: str, version: int | None, off: bool) -> None:
    """Mirror NAME's prediction requests to VERSION: its answers are logged for comparison and
    never returned to clients.

    \b
    Examples:
      nbdeploy shadow iris 5      v5 sees every request in the background
      nbdeploy shadow iris --off"""
    if off or version is None:
        if not off:
            raise click.UsageError("give a VERSION to mirror to, or --off")
        api.shadow(name, None)
        console.print(f"{name}: shadow traffic stopped")
        return
    api.shadow(name, version)
    console.print(f"[green]{name}[/green]: every prediction request is mirrored to v{version}")


@cli.command()
@click.argument("name")
@click.option("--window", default="1h", show_default=True, help="How far back: 15m, 1h, 24h, 7d.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@friendly
def kpis(name: str, window: str, as_json: bool) -> None:
    """Request rate, error rate and latency percentiles per version, from the prediction log."""
    from nbdeploy import monitoring

    data = monitoring.kpis(name, window)
    if as_json:
        click.echo(json.dumps({str(k): v for k, v in data.items()}, indent=2, default=str))
        return
    table = Table("version", "requests", "req/s", "errors", "rejected (4xx)", "p50 ms", "p95 ms", "p99 ms",
                  title=f"{name}, last {window}")
    for v, d in sorted(data.items()):
        table.add_row(f"v{v}", str(d["requests"]), f"{d['rate']:.2f}", f"{d['error_rate']:.1%}",
                      f"{d['rejected_rate']:.1%}", f"{d['p50_ms']:.1f}", f"{d['p95_ms']:.1f}",
                      f"{d['p99_ms']:.1f}")
    console.print(table if data else f"no traffic logged for {name} in the last {window}")


@cli.command()
@click.argument("name")
@click.argument("rules", nargs=-1, metavar="RULE...")
@friendly
def alerts(name: str, rules: tuple[str, ...]) -> None:
    """Set alert rules (with RULE...) or show the alerts firing now (without). Exits 1 when one fires.

    \b
    Rules: accuracy<0.9  error_rate>0.05  p99_ms>200  drift   (optionally @v3 for one version)
      nbdeploy alerts iris 'accuracy<0.9' 'error_rate>0.05' drift
      nbdeploy alerts iris                                   # what fires now"""
    from nbdeploy import monitoring

    if rules:
        try:
            saved = monitoring.set_alerts(name, list(rules))
        except ValueError as exc:
            raise NbdeployError(str(exc)) from None
        console.print(f"{name}: alert rules set: {', '.join(saved)}")
        return
    fired = monitoring.alerts(name)
    for a in fired:
        console.print(f"[red]{a.severity}[/red] {a.message}")
    if not fired:
        console.print(f"{name}: no alert firing")
    sys.exit(1 if fired else 0)


@cli.command()
@click.argument("name")
@click.option("-p", "--param", "param_items", multiple=True, metavar="KEY=VALUE",
              help="Parameter for the training notebook (e.g. a new data path).")
@click.option("--require-better", is_flag=True, help="Promote only if it beats the serving version.")
@click.option("--timeout", default=900, show_default=True, help="Seconds allowed per notebook cell.")
@friendly
def retrain(name: str, param_items: tuple[str, ...], require_better: bool, timeout: float) -> None:
    """Re-run NAME's recorded training notebook with papermill, deploy the result through the
    serving version's validation gate, and promote it only if it passes.

    \b
    Example:
      nbdeploy retrain churn -p data=data/2026-11.parquet --require-better"""
    from nbdeploy.retrain import retrain as run
    from nbdeploy.validate.batch import parse_param

    params = dict(parse_param(p) for p in param_items)
    result = run(name, params=params, require_better=require_better, timeout=timeout)
    status = result["status"]
    console.print(f"{name}: retrained → v{result.get('new_version') or '—'} {badge(status)}"
                  + (f" ({result['reason']})" if result.get("reason") else ""))
    console.print(f"executed notebook: {result.get('executed_notebook')}")
    sys.exit(0 if status == "serving" else 1)


@cli.command()
@click.argument("ref", metavar="NAME[:VERSION]")
@click.option("--tolerance", default=0.0, show_default=True, help="Largest difference still 'the same'.")
@click.option("--timeout", default=900, show_default=True, help="Seconds allowed per notebook cell.")
@friendly
def reproduce(ref: str, tolerance: float, timeout: float) -> None:
    """Re-execute the version's training notebook in a fresh kernel and check the rebuilt model
    predicts the stored reference sample like the deployed one. Exits 1 when it does not."""
    from nbdeploy.reproduce import reproduce as run

    result = run(ref, tolerance=tolerance, timeout=timeout)
    for w in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}")
    console.print(str(result))
    sys.exit(0 if result.ok else 1)
