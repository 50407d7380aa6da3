"""Planted secrets: credentials files under HOME, a .env in the working folder and secret
environment variables never reach the registry, the BentoML store, any log, or an export."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import httpx
import pytest
from sklearn.linear_model import LogisticRegression

import nbdeploy.api as api
from nbdeploy import config
from nbdeploy.lifecycle import export_spec
from nbdeploy.package.export import export
from nbdeploy.registry import Registry
from tests import models

pytestmark = pytest.mark.slow

SECRETS = {
    "env": "sk-PLANTED-env-2b7e151628aed2a6",
    "aws": "PLANTEDawsSECRET/K7MDENG+bPxRfiCYEXAMPLEKEY",
    "netrc": "planted-netrc-password-9c41",
    "dotenv": "planted-dotenv-token-5f0d77",
}


def leaks(place: Path) -> list[tuple[Path, str]]:
    """Every file under ``place`` (logs included) holding a planted secret, with which one."""
    found = []
    for path in place.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [(path, kind) for kind, value in SECRETS.items() if value.encode() in data]
    return found


def test_planted_secrets_reach_no_file_log_or_export(tmp_path, monkeypatch):
    home, work = tmp_path / "home", tmp_path / "work"
    (home / ".aws").mkdir(parents=True)
    work.mkdir()
    (home / ".aws" / "credentials").write_text(
        f"[default]\naws_access_key_id = AKIAPLANTED\naws_secret_access_key = {SECRETS['aws']}\n")
    (home / ".netrc").write_text(f"machine pypi.org login me password {SECRETS['netrc']}\n")
    (work / ".env").write_text(f"API_TOKEN={SECRETS['dotenv']}\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRETS["env"])
    monkeypatch.setenv("GITHUB_TOKEN", SECRETS["env"])
    monkeypatch.setenv("NBDEPLOY_API_KEY", SECRETS["env"])
    assert Path.home() == home

    X, y = models.iris()
    dep = api.deploy(LogisticRegression(max_iter=500).fit(X, y), "planted", X)
    rows = {"rows": X.head(3).to_dict(orient="records")}
    ok = httpx.post(f"{dep.url}/predict", json=rows, headers={"Authorization": f"Bearer {SECRETS['env']}"})
    assert ok.status_code == 200  # the server got the key from the environment, as it should
    assert httpx.post(f"{api.endpoint_url('planted')}/predict", json=rows,
                      headers={"Authorization": f"Bearer {SECRETS['env']}"}).status_code == 200
    logs = list(config.logs_dir().rglob("*.log"))
    assert logs and any(p.stat().st_size > 0 for p in logs)  # the scan below includes logs

    out = work / "deploy"
    notebook = work / "checks.ipynb"
    notebook.write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    spec = dataclasses.replace(export_spec("planted"), build_image=False,
                               validation_notebooks=[str(notebook)])
    for target in ("docker", "k8s", "kserve", "github-actions"):
        export(spec, out, target, echo=None)
    assert (out / "planted-v1.bento").is_file() and (out / "docker" / "Dockerfile").is_file()
    import bentoml

    row = Registry().version("planted", 1)
    places = [config.home(), Path(bentoml.bentos.get(row["bento_tag"]).path),
              Path(bentoml.models.get(row["model_tag"]).path), out]
    for place in places:
        assert leaks(place) == [], place
    # the bento archive is a tarball: scan it unpacked as well
    import tarfile

    unpacked = tmp_path / "unpacked"
    with tarfile.open(out / "planted-v1.bento") as tar:
        tar.extractall(unpacked, filter="data")
    assert len(list(unpacked.rglob("*"))) > 5 and leaks(unpacked) == []
