"""``nbdeploy`` commands for traffic and quality: split, shadow, kpis, live, compare, alerts,
retrain, reproduce."""

from __future__ import annotations

import json
import re
import sys

import click
from rich.table import Table

from nbdeploy import api
from nbdeploy.cli import badge, cli, console, friendly, when
from nbdeploy.errors import NbdeployError

RECENT = "Only predictions this recent: 1h, 24h, 7d (default: all logged)."


def parse_version(text: str) -> int:
    """'3', 'v3' or 'V3' → 3 (BadParameter otherwise)."""
    m = re.fullmatch(r"v?(\d+)", text.strip(), re.IGNORECASE)
    if not m:
        raise click.BadParameter(f"{text!r} is not a version: write 3 or v3", param_hint="VERSION")
    return int(m.group(1))


def parse_weights(items: tuple[str, ...] | list[str]) -> dict[int, int]:
    """('V3=90', 'v4=10%') → {3: 90, 4: 10}; a version named twice is an error."""
    parsed: dict[int, int] = {}
    for item in items:
        m = re.fullmatch(r"v?(\d+)\s*=\s*(\d+)\s*%?", item.strip(), re.IGNORECASE)
        if not m:
            raise click.BadParameter(f"{item!r}: write VERSION=PERCENT, e.g. 3=90 or V3=90",
                                     param_hint="VERSION=PERCENT")
        version = int(m.group(1))
        if version in parsed:
            raise click.BadParameter(f"v{version} is given twice", param_hint="VERSION=PERCENT")
        parsed[version] = int(m.group(2))
    return parsed


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
      nbdeploy split iris 3=90 4=10     canary: 10 % of requests to v4 (V3=90 V4=10 also works)
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
    result = api.split(name, parse_weights(weights))
    console.print(f"[green]{name} split[/green]: " + ", ".join(f"v{v} {w}%" for v, w in result.items()))


@cli.command()
@click.argument("name")
@click.argument("version", required=False)
@click.option("--off", is_flag=True, help="Stop mirroring.")
@friendly
def shadow(name: str, version: str | None, off: bool) -> None:
    """Mirror NAME's prediction requests to VERSION: its answers are logged for comparison and
    never returned to clients.

    \b
    Examples:
      nbdeploy shadow iris 5      v5 (or V5) sees every request in the background
      nbdeploy shadow iris --off"""
    if off or version is None:
        if not off:
            raise click.UsageError("give a VERSION to mirror to, or --off")
        api.shadow(name, None)
        console.print(f"{name}: shadow traffic stopped")
        return
    number = parse_version(version)
    api.shadow(name, number)
    console.print(f"[green]{name}[/green]: every prediction request is mirrored to v{number}")


@cli.command()
@click.argument("name")
@click.option("--window", default="1h", show_default=True, help="How far back: 15m, 1h, 24h, 7d.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@friendly
def kpis(name: str, window: str, as_json: bool) -> None:
    """Request rate, error rate and latency percentiles per version, from the prediction log."""
    from nbdeploy import monitoring

    try:
        data = monitoring.kpis(name, window)
    except ValueError as exc:
        raise NbdeployError(str(exc)) from None
    if as_json:
        click.echo(json.dumps({str(k): v for k, v in data.items()}, indent=2, default=str))
        return
    table = Table("version", "requests", "req/s", "errors", "rejected (4xx)", "p50 ms", "p95 ms", "p99 ms",
                  title=f"{name}, last {window}")
    fmt = monitoring.fmt
    for v, d in sorted(data.items()):
        table.add_row(f"v{v}", str(d["requests"]), fmt(d["rate"], ".2f"), fmt(d["error_rate"], ".1%"),
                      fmt(d["rejected_rate"], ".1%"), fmt(d["p50_ms"], ".1f"), fmt(d["p95_ms"], ".1f"),
                      fmt(d["p99_ms"], ".1f"))
    console.print(table if data else f"no traffic logged for {name} in the last {window}")


@cli.command()
@click.argument("name")
@click.option("--window", default=None, help=RECENT)
@click.option("--bucket", default="1h", show_default=True,
              help="Time step of the over-time table: 10m, 1h, 1d.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@friendly
def live(name: str, window: str | None, bucket: str, as_json: bool) -> None:
    """Live accuracy (error metrics for regression) per version, overall and over time, from the
    true labels sent to the stable endpoint's /feedback and joined to the prediction log.

    \b
    Examples:
      nbdeploy live churn                 accuracy of every version that answered labelled requests
      nbdeploy live churn --window 7d --bucket 1d
      nbdeploy compare churn 3 4          is v4 significantly better than v3?"""
    from nbdeploy import monitoring

    try:
        data = monitoring.live(name, window, bucket=bucket)
    except ValueError as exc:
        raise NbdeployError(str(exc)) from None
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
        return
    if not data["versions"]:
        console.print(f"{name}: no feedback joined to a logged prediction yet "
                      f"({data['feedback']} feedback entries, {data['unmatched']} unmatched)")
        return
    headers = monitoring.quality_headers(data["task"])
    table = Table(*headers, title=f"{name}: live quality from feedback")
    for row in monitoring.quality_rows(data):
        table.add_row(*row)
    console.print(table)
    over = Table("from", *headers, title=f"over time (every {bucket})")
    for v, q in sorted(data["versions"].items()):
        for point in q["series"]:
            [row] = monitoring.quality_rows({"task": data["task"], "versions": {v: point}})
            over.add_row(when(point["t"]), *row)
    console.print(over)
    if data["unmatched"]:
        console.print(f"[yellow]{data['unmatched']} feedback entries match no logged prediction "
                      "in this window[/yellow]")


@cli.command()
@click.argument("name")
@click.argument("a", metavar="A")
@click.argument("b", metavar="B")
@click.option("--window", default=None, help=RECENT)
@click.option("--alpha", default=0.05, show_default=True, help="Significance level of the test.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@friendly
def compare(name: str, a: str, b: str, window: str | None, alpha: float, as_json: bool) -> None:
    """A/B: compare versions A and B of NAME on live feedback (accuracy, or MAE for regression)
    with a significance test. Exits 0 when B is significantly better, 1 otherwise.

    Run a split first (nbdeploy split NAME A=50 B=50) or a shadow, then send feedback.
    To compare what was recorded at deploy time instead (schema, pins, lineage), use diff.

    \b
    Examples:
      nbdeploy compare churn 3 4
      nbdeploy compare churn v3 v4 --window 7d --alpha 0.01"""
    from nbdeploy import monitoring
    from nbdeploy.monitor import FeedbackError

    va, vb = parse_version(a), parse_version(b)
    try:
        r = monitoring.compare(name, va, vb, window=window, alpha=alpha)
    except (FeedbackError, ValueError) as exc:
        raise NbdeployError(str(exc)) from None
    if as_json:
        click.echo(json.dumps(r, indent=2, default=str))
    else:
        pct = r["metric"] == "accuracy"
        spec = ".1%" if pct else ".4g"
        table = Table("version", "labelled rows", r["metric"], title=f"{name}: v{va} vs v{vb}")
        table.add_row(f"v{va}", str(r["n_a"]), format(r["value_a"], spec))
        table.add_row(f"v{vb}", str(r["n_b"]), format(r["value_b"], spec))
        console.print(table)
        lo, hi = r["ci"]
        console.print(f"difference (v{vb} - v{va}): {r['difference']:{spec}}  "
                      f"{1 - alpha:.0%} CI [{lo:{spec}}, {hi:{spec}}]  p = {r['p_value']:.3g} ({r['test']})")
        verdict = (f"[green]v{r['winner']} is better[/green]" if r["winner"] is not None
                   else "no significant difference yet")
        console.print(f"verdict: {verdict}")
    sys.exit(0 if r["winner"] == vb else 1)


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
@click.option("--no-gate", "no_gate", is_flag=True,
              help="Retrain even though the serving version has no validation notebooks "
                   "(the new model is then deployed unchecked).")
@click.option("--timeout", default=900, show_default=True, help="Seconds allowed per notebook cell.")
@friendly
def retrain(name: str, param_items: tuple[str, ...], require_better: bool, no_gate: bool,
            timeout: float) -> None:
    """Re-run NAME's recorded training notebook with papermill, deploy the result through the
    serving version's validation gate, and promote it only if it passes.

    A serving version deployed without validation notebooks has no gate to reuse: retrain
    refuses unless you pass --no-gate.

    \b
    Example:
      nbdeploy retrain churn -p data=data/2026-11.parquet --require-better"""
    from nbdeploy.retrain import retrain as run
    from nbdeploy.validate.batch import parse_param

    params = dict(parse_param(p) for p in param_items)
    result = run(name, params=params, require_better=require_better, timeout=timeout,
                 allow_ungated=no_gate)
    status = result["status"]
    if result.get("ungated"):
        console.print("[yellow]warning:[/yellow] no validation gate: the new version was not checked")
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
