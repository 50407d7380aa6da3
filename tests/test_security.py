"""Security rules, each with a negative test: loopback by default, API keys, no pickle,
skops, no secrets captured, append-only audit log, TLS."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import httpx
import numpy as np
import pytest
from click.testing import CliRunner

import nbdeploy.api as api
from nbdeploy import config
from nbdeploy.cli import cli
from nbdeploy.registry import Registry
from tests import models

pytestmark = pytest.mark.slow


def _listen_addresses(port: int) -> set[str]:
    """Local addresses listening on ``port``, read from /proc/net/tcp."""
    out = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        hexip, hexport = local.split(":")
        if int(hexport, 16) == port and state == "0A":
            out.add(".".join(str(int(hexip[i:i + 2], 16)) for i in (6, 4, 2, 0)))
    return out


def test_serves_on_loopback_by_default(iris_model):
    model, X = iris_model
    dep = api.deploy(model, "loop", X)
    assert dep.row["host"] == "127.0.0.1"
    assert _listen_addresses(dep.row["port"]) == {"127.0.0.1"}


def test_other_address_needs_api_key_and_health_stays_open(iris_model):
    model, X = iris_model
    api.deploy(model, "keyed", X, serve=False)
    shown: list[str] = []
    dep = api.start("keyed", 1, host="0.0.0.0", progress=lambda s, m: shown.append(m))
    key = dep.api_key
    assert key and any(key in m and "shown once" in m for m in shown)
    assert _listen_addresses(dep.row["port"]) == {"0.0.0.0"}
    url, rows = dep.url, {"rows": X.head(2).to_dict(orient="records")}
    for path in ("/predict", "/predict_proba"):
        assert httpx.post(url + path, json=rows).status_code == 401
        assert httpx.post(url + path, json=rows, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(url + "/metadata").status_code == 401
    assert httpx.get(url + "/docs.json").status_code == 401
    assert httpx.post(url + "/v2/models/keyed/infer", json={}).status_code == 401
    for path in ("/readyz", "/livez", "/v2/health/live", "/v2/health/ready"):
        assert httpx.get(url + path).status_code == 200, path
    ok = httpx.post(url + "/predict", json=rows, headers={"Authorization": f"Bearer {key}"})
    assert ok.status_code == 200 and ok.json() == model.predict(X.head(2)).tolist()
    assert httpx.post(url + "/predict", json=rows, headers={"X-API-Key": key}).status_code == 200
    # the key is never written to the registry or the audit log
    assert key not in Path(config.registry_path()).read_bytes().decode(errors="ignore")
    assert all(key not in json.dumps(e) for e in Registry().events())


def test_pickle_payloads_are_refused(iris_model):
    import pickle

    model, X = iris_model
    dep = api.deploy(model, "nopickle", X)
    for ctype in ("application/vnd.bentoml+pickle", "application/python-pickle", "application/x-pickle"):
        resp = httpx.post(f"{dep.url}/predict", content=pickle.dumps({"rows": []}),
                          headers={"content-type": ctype})
        assert resp.status_code == 415 and "pickle" in resp.json()["error"]
    good = {"rows": X.head(1).to_dict(orient="records")}
    assert httpx.post(f"{dep.url}/predict", json=good).status_code == 200


def test_skops_format_serves_and_loads_with_explicit_trusted_types():
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    X, y = models.mixed()
    X = X[["age", "income", "plan"]]
    pre = ColumnTransformer([("oh", OneHotEncoder(), ["plan"])], remainder="passthrough")
    pipe = Pipeline([("pre", pre),
                     ("rf", RandomForestClassifier(n_estimators=10, random_state=0))]).fit(X, y)
    dep = api.deploy(pipe, "skopsed", X, format="skops")
    row = dep.row
    assert row["framework"] == "skops"
    import bentoml

    files = {p.name for p in Path(bentoml.models.get(row["model_tag"]).path).iterdir()}
    assert "model.skops" in files and not any(f.endswith((".pkl", ".joblib")) for f in files)
    assert dep.predict(X.head(5)) == pipe.predict(X.head(5)).tolist()
    meta = httpx.get(f"{dep.url}/metadata").json()
    assert isinstance(meta["skops_trusted"], list)
    loaded, _ = api.load_model("skopsed")
    np.testing.assert_array_equal(loaded.predict(X.head(5)), pipe.predict(X.head(5)))
    with pytest.raises(api.NbdeployError, match="scikit-learn estimators"):
        api.deploy(lambda df: df["age"], "skops-bad", X, format="skops")


def test_no_secret_from_the_environment_is_captured(iris_model, monkeypatch, tmp_path):
    secret = "sk-PLANTED-7f3a9c1e5b"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("NBDEPLOY_API_KEY", secret)
    creds = Path.home() / ".nbdeploy-test-credentials"
    creds.write_text(f"token={secret}\n")
    try:
        model, X = iris_model
        dep = api.deploy(model, "secretless", X)
        import bentoml

        places = [Path(config.home()), Path(bentoml.get(dep.row["bento_tag"]).path),
                  Path(bentoml.models.get(dep.row["model_tag"]).path)]
        for place in places:
            for path in place.rglob("*"):
                if path.is_file() and not path.name.endswith(".log"):
                    assert secret.encode() not in path.read_bytes(), path
    finally:
        creds.unlink()


def test_audit_log_is_append_only_and_exportable(iris_model):
    model, X = iris_model
    api.deploy(model, "audited", X, serve=False)
    conn = sqlite3.connect(config.registry_path())
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("UPDATE events SET action = 'forged'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM events")
    conn.close()
    result = CliRunner().invoke(cli, ["audit", "--json"])
    assert result.exit_code == 0, result.output
    events = json.loads(result.output)
    assert [e["action"] for e in events] == ["deploy"]
    assert events[0]["name"] == "audited" and events[0]["user"] == "tester"


def test_tls_serves_https_with_a_self_signed_certificate(iris_model, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    model, X = iris_model
    api.deploy(model, "tls", X, serve=False)
    dep = api.start("tls", 1, tls_cert=cert, tls_key=key)
    assert dep.url.startswith("https://")
    resp = httpx.post(f"{dep.url}/predict", json={"rows": X.head(2).to_dict(orient="records")},
                      verify=str(cert))
    assert resp.status_code == 200
    with pytest.raises(httpx.HTTPError):
        httpx.get(dep.url.replace("https://", "http://") + "/readyz", timeout=3)
    with pytest.raises(api.NbdeployError, match="both"):
        api.start("tls", 1, port=None, tls_cert=cert)




def test_sensitive_columns_never_reach_the_prediction_log_in_clear():
    import pandas as pd
    from sklearn.linear_model import LinearRegression

    X = pd.DataFrame({"email": ["a@x.org", "b@y.org", "c@z.org", "d@w.org"], "age": [31.0, 45.0, 52.0, 28.0],
                      "ssn": ["111-22-3333", "222-33-4444", "333-44-5555", "444-55-6666"]})
    model = lambda df: df["age"].to_numpy() * 2  # noqa: E731 - a plain function is a valid model
    dep = api.deploy(model, "private", X, sensitive={"email": "hash", "ssn": "drop"})
    secret_email, secret_ssn = "alice.secret@example.org", "987-65-4321"
    rows = [{"email": secret_email, "age": 40.0, "ssn": secret_ssn}]
    with pytest.raises(api.NbdeployError, match="sensitive="):
        api.deploy(LinearRegression().fit(X[["age"]], [1, 2, 3, 4]), "private2", X[["age"]],
                   sensitive={"nope": "hash"})
    resp = httpx.post(f"{dep.endpoint}/predict", json={"rows": rows})
    assert resp.status_code == 200 and resp.json() == [80.0]
    from nbdeploy import monitoring

    log = monitoring.predlog("private")
    records = log.read()
    assert len(records) == 1 and "ssn" not in records[0]["inputs"][0]
    assert records[0]["inputs"][0]["email"] != secret_email and records[0]["inputs"][0]["age"] == 40.0
    for path in log.directory.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert secret_email.encode() not in data and secret_ssn.encode() not in data, path
