"""Lifecycle commands on versions that are built but never served, with hand-written
prediction logs: show, diff, drift, status, kpis, live, compare, split/shadow parsing;
and the lineage a deploy records from a notebook inside a git repository."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import pandas as pd
import pytest
from click.testing import CliRunner
from sklearn.linear_model import LogisticRegression

from nbdeploy import api
from nbdeploy.cli import cli, when
from nbdeploy.cli_traffic import parse_version, parse_weights
from nbdeploy.lineage import data_fingerprint
from nbdeploy.registry import Registry
from tests import models
from tests.helpers import predlogs

NAME = "life"
DROPPED = "sepal width (cm)"


@dataclass
class Life:
    """Two versions of ``life``: v1 on every iris column, v2 without one, from two notebooks
    committed one after the other in a git repository."""

    home: Path
    X: pd.DataFrame
    y: pd.Series
    notebooks: tuple[Path, Path]
    commits: tuple[str, str]
    started: float
    finished: float

    @property
    def X2(self) -> pd.DataFrame:
        return self.X.drop(columns=DROPPED)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com",
                           *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def life(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Life]:
    base = tmp_path_factory.mktemp("lifecycle")
    repo = base / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    home = base / "nbdeploy"
    X, y = models.iris()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NBDEPLOY_HOME", str(home))
        mp.setenv("NBDEPLOY_USER", "tester")
        commits, notebooks = [], []
        started = time.time()
        for i, frame in enumerate((X, X.drop(columns=DROPPED))):
            nb = repo / f"train{i + 1}.ipynb"
            nb.write_text(json.dumps({"cells": [], "metadata": {"run": i}, "nbformat": 4,
                                      "nbformat_minor": 5}))
            git(repo, "add", nb.name)
            git(repo, "commit", "-q", "-m", f"train {i + 1}")
            commits.append(git(repo, "rev-parse", "HEAD"))
            notebooks.append(nb)
            api.deploy(LogisticRegression(max_iter=500).fit(frame, y), NAME, frame,
                       notebook=str(nb), serve=False)
        finished = time.time()
    yield Life(home, X, y, tuple(notebooks), tuple(commits), started, finished)


@pytest.fixture
def ctx(life: Life, monkeypatch: pytest.MonkeyPatch) -> Life:
    """The two versions with an empty prediction log and no alert rules."""
    monkeypatch.setenv("NBDEPLOY_HOME", str(life.home))
    predlogs.reset(NAME)
    Registry().update_deployment(NAME, settings={})
    return life


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_lineage_records_notebook_hash_git_commit_data_user_and_time(ctx: Life) -> None:
    for version, nb, commit, frame in ((1, ctx.notebooks[0], ctx.commits[0], ctx.X),
                                       (2, ctx.notebooks[1], ctx.commits[1], ctx.X2)):
        lin = Registry().version(NAME, version)["lineage"]
        assert lin["notebook"] == str(nb.resolve())
        assert lin["notebook_sha256"] == hashlib.sha256(nb.read_bytes()).hexdigest()
        assert lin["git_commit"] == commit and len(commit) == 40
        assert lin["data_fingerprint"] == data_fingerprint(frame) and lin["data_rows"] == 150
        assert lin["user"] == "tester"
        assert ctx.started <= lin["created_at"] <= ctx.finished
    assert ctx.commits[0] != ctx.commits[1]


def test_show_version_prints_notebook_hash_and_who_when(ctx: Life) -> None:
    row = Registry().version(NAME, 1)
    code, out = run("show", f"{NAME}:1")
    assert code == 0
    assert f"sha256 {row['lineage']['notebook_sha256'][:16]}" in out
    assert f"git {ctx.commits[0][:12]}" in out
    assert f"deployed by tester on {when(row['created_at'])}" in out


def test_diff_shows_schema_pins_and_lineage_differences(ctx: Life) -> None:
    reg = Registry()
    pins = dict(reg.version(NAME, 2)["pins"])
    original = dict(pins)
    pins["scikit-learn"] = "0.0.1"  # as if v2 had been trained with another scikit-learn
    reg.update_version(NAME, 2, pins=pins)
    try:
        code, out = run("diff", f"{NAME}:1", f"{NAME}:2", "--json")
        assert code == 0
        d = json.loads(out)
        assert d["schema"] == {"added": [], "removed": [DROPPED], "changed": []}
        assert d["pins"] == {"scikit-learn": [original["scikit-learn"], "0.0.1"]}
        lineage = d["lineage"]
        assert lineage["git_commit"] == list(ctx.commits)
        assert lineage["notebook"] == [str(p.resolve()) for p in ctx.notebooks]
        assert lineage["data_fingerprint"] == [data_fingerprint(ctx.X), data_fingerprint(ctx.X2)]
        assert "created_at" not in lineage and "user" not in lineage  # same user; time always differs

        code, out = run("diff", f"{NAME}:1", f"{NAME}:2")
        assert code == 0
        assert f"schema: added [] removed ['{DROPPED}'] changed []" in out
        cells = re.sub(r"[\s│]", "", out)  # long values fold onto a second line of their cell
        assert "0.0.1" in out and ctx.commits[1] in out and "train2.ipynb" in cells
        assert "…" not in out  # nothing cut off
    finally:
        reg.update_version(NAME, 2, pins=original)
    code, out = run("diff", f"{NAME}:1", f"{NAME}:9")
    assert code == 1 and "life has no version 9" in out


def test_drift_exits_0_on_unshifted_and_1_on_shifted_traffic(ctx: Life) -> None:
    predlogs.write(NAME, ctx.X2, version=2)
    code, out = run("drift", NAME)  # the newest version, since none serves
    assert code == 0 and "verdict: no drift" in out

    predlogs.reset(NAME)
    shifted = ctx.X2.assign(**{"petal width (cm)": ctx.X2["petal width (cm)"] * 3 + 1})
    predlogs.write(NAME, shifted, version=2)
    code, out = run("drift", NAME, "--window", "24h")
    assert code == 1 and "verdict: drift" in out
    code, out = run("drift", NAME, "--json")
    assert code == 1 and json.loads(out)["drifted"] == ["petal width (cm)"]
    code, out = run("drift", NAME, "--window", "1x")
    assert code == 1 and "cannot read the window '1x'" in out and "Traceback" not in out


def test_status_shows_firing_alerts(ctx: Life) -> None:
    code, out = run("alerts", NAME, "drift", "accuracy<0.9")
    assert code == 0 and "alert rules set: drift, accuracy<0.9" in out
    code, out = run("status", NAME)
    assert code == 0 and "firing" not in out

    shifted = ctx.X2.assign(**{"petal width (cm)": ctx.X2["petal width (cm)"] * 3 + 1})
    ids = predlogs.write(NAME, shifted, version=2, outputs=[0] * 150)
    predlogs.feedback(NAME, ids, ctx.y.tolist())  # one third right
    code, out = run("status", NAME)
    assert code == 0  # alerts do not make a stopped deployment "down"
    assert "2 firing" in out
    assert "input drift in 1 feature(s): petal width (cm)" in out
    assert "v2 live accuracy 0.333 < 0.9 over 150 labelled rows" in out
    code, out = run("alerts", NAME)
    assert code == 1 and "critical" in out

    code, out = run("alerts", NAME, "accuracy>0.9")
    assert code == 1 and "cannot read alert rule 'accuracy>0.9'" in out


def test_kpis_table_and_json(ctx: Life) -> None:
    predlogs.write(NAME, ctx.X.head(19), version=1, latency_ms=10)
    predlogs.write(NAME, ctx.X.head(1), version=1, status=500, prefix="err")
    predlogs.write(NAME, ctx.X2.head(1), version=2, latency_ms=30)
    code, out = run("kpis", NAME, "--json")
    assert code == 0
    data = json.loads(out)
    assert (data["1"]["requests"], data["1"]["errors"], data["1"]["error_rate"]) == (20, 1, 0.05)
    assert data["2"]["requests"] == 1 and data["2"]["p50_ms"] == 30.0
    assert data["1"]["rate"] == pytest.approx(20 / 3600)

    code, out = run("kpis", NAME, "--window", "1h")
    assert code == 0
    cells = {row[0]: row for row in ([c.strip() for c in line.split("│")[1:-1]]
                                     for line in out.splitlines() if "│ v" in line)}
    # version, requests, req/s, errors, rejected, p50, p95, p99
    assert cells["v1"][:5] == ["v1", "20", "0.01", "5.0%", "0.0%"]
    assert cells["v2"] == ["v2", "1", "0.00", "0.0%", "0.0%", "30.0", "30.0", "30.0"]
    code, out = run("kpis", NAME, "--window", "soon")
    assert code == 1 and "cannot read the window 'soon'" in out


def test_live_and_compare_commands(ctx: Life) -> None:
    truth = ctx.y.tolist()
    a = predlogs.write(NAME, ctx.X, version=1, outputs=truth, prefix="a")
    b = predlogs.write(NAME, ctx.X2, version=2, prefix="b",
                       outputs=truth[:90] + [(t + 1) % 3 for t in truth[90:]])
    code, out = run("live", NAME)
    assert code == 0 and "no feedback joined to a logged prediction yet" in out
    code, out = run("compare", NAME, "1", "2")
    assert code == 1 and "need at least 2 scored rows per version" in out

    predlogs.feedback(NAME, a + b, truth + truth)
    code, out = run("live", NAME, "--json")
    assert code == 0
    versions = json.loads(out)["versions"]
    assert {v: (q["n"], q["accuracy"]) for v, q in versions.items()} == {"1": (150, 1.0),
                                                                         "2": (150, 0.6)}
    code, out = run("live", NAME, "--bucket", "10m")
    assert code == 0 and "100.0%" in out and "60.0%" in out and "over time (every 10m)" in out

    code, out = run("compare", NAME, "V1", "v2")
    assert code == 1  # B is not better
    assert "v1 is better" in out and "p = " in out
    code, out = run("compare", NAME, "2", "1", "--json")
    assert code == 0
    result = json.loads(out)
    assert (result["a"], result["b"], result["winner"]) == (2, 1, 1)
    assert result["difference"] == pytest.approx(0.4)
    code, out = run("compare", NAME, "one", "2")
    assert code == 2 and "'one' is not a version" in out


def test_split_and_shadow_parse_versions_as_the_issue_writes_them(ctx: Life) -> None:
    assert parse_weights(("V3=90", "v4=10%", "5 = 0")) == {3: 90, 4: 10, 5: 0}
    assert parse_version("V5") == parse_version("v5") == parse_version("5") == 5
    with pytest.raises(click.BadParameter, match="given twice"):
        parse_weights(("3=50", "V3=50"))

    code, out = run("split", NAME, "V1=90", "V9=10")  # parsed, then refused by the registry
    assert code == 1 and "life has no version 9" in out
    code, out = run("split", NAME, "V1=90", "V2=20")
    assert code == 1 and "add up to 110" in out
    code, out = run("split", NAME, "3:90")
    assert code == 2 and "write VERSION=PERCENT, e.g. 3=90 or V3=90" in out
    code, out = run("shadow", NAME, "V9")
    assert code == 1 and "life has no version 9" in out
    code, out = run("shadow", NAME, "x9")
    assert code == 2 and "'x9' is not a version" in out
    code, out = run("shadow", NAME)
    assert code == 2 and "give a VERSION" in out
    assert Registry().deployment(NAME)["split"] is None  # nothing refused changed anything


def test_help_teaches_the_new_commands() -> None:
    for command, words in (("live", ["--bucket", "Examples", "/feedback"]),
                           ("compare", ["significance", "Examples", "diff"]),
                           ("rollback", ["served before", "--to"]),
                           ("split", ["V3=90"])):
        code, out = run(command, "--help")
        assert code == 0 and all(w in out for w in words), (command, out)


def test_rollback_target_follows_the_switch_history(ctx: Life) -> None:
    from nbdeploy.lifecycle import rollback_target, serving_history

    reg = Registry()
    assert serving_history(NAME) == [] and rollback_target(NAME) is None
    code, out = run("rollback", NAME)
    assert code == 1 and "no earlier good version to roll back to" in out and "--to VERSION" in out
    # the events promote and rollback leave (written by hand: nothing here is served)
    for version in (1, 2, 1):  # v1, then v2, then v1 promoted again
        reg.log_event("switch", name=NAME, version=version)
    assert serving_history(NAME) == [1, 2, 1]
    assert rollback_target(NAME) == 2  # served before v1, though its number is higher
    reg.log_event("rollback", name=NAME, version=2, detail={"from": 1})
    reg.log_event("switch", name=NAME, version=2)
    assert serving_history(NAME) == [1, 2]  # a rollback pops: the next one goes further back
    assert rollback_target(NAME) == 1
    reg.update_version(NAME, 1, status="rejected", reason="found wanting")
    reg.update_deployment(NAME, serving_version=2)  # as those switches left it
    try:
        assert rollback_target(NAME) is None  # a version that can no longer serve is skipped
        code, out = run("rollback", NAME)
        assert code == 1 and "none of the versions served before v2 can serve again" in out
    finally:
        reg.update_version(NAME, 1, status="ready", reason=None)
        reg.update_deployment(NAME, serving_version=None)


def test_one_setting_written_keeps_the_others(ctx: Life) -> None:
    reg = Registry()
    reg.set_setting(NAME, "alerts", ["drift"])
    before = reg.settings(NAME)
    reg.set_setting(NAME, "probe", {"a": 1})
    assert reg.settings(NAME) == {**before, "probe": {"a": 1}}
    assert reg.settings(NAME)["alerts"] == ["drift"]
