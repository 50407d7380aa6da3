"""Encryption in transit end to end: a version served over HTTPS behind the stable endpoint,
deployed from the API and from `nbdeploy serve`, with a self-signed certificate made here;
and the API key taken from $NBDEPLOY_API_KEY when the CLI binds a non-loopback address."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

import nbdeploy.api as api
from nbdeploy.cli import cli
from nbdeploy.registry import Registry

pytestmark = pytest.mark.slow


@pytest.fixture
def cert(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with openssl for this test."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def test_stable_endpoint_forwards_to_a_version_served_over_https(iris_model, cert):
    model, X = iris_model
    rows = {"rows": X.head(3).to_dict(orient="records")}
    dep = api.deploy(model, "tlsd", X, tls_cert=cert[0], tls_key=cert[1])
    assert dep.url.startswith("https://127.0.0.1:")
    assert dep.row["tls"] == 1
    # the version itself: HTTPS only, trusted through the test's own certificate
    direct = httpx.post(f"{dep.url}/predict", json=rows, verify=str(cert[0]))
    assert direct.status_code == 200 and direct.json() == model.predict(X.head(3)).tolist()
    with pytest.raises(httpx.HTTPError):
        httpx.get(dep.url.replace("https://", "http://") + "/readyz", timeout=3)
    # the stable endpoint reaches it over TLS (it answered 503 when it forwarded plain http)
    stable = api.endpoint_url("tlsd")
    assert httpx.get(f"{stable}/readyz").status_code == 200
    routed = httpx.post(f"{stable}/predict", json=rows)
    assert routed.status_code == 200, routed.text
    assert routed.json() == model.predict(X.head(3)).tolist()
    assert routed.headers["x-nbdeploy-version"] == "1"


def test_cli_serve_with_tls_host_and_the_environment_api_key(iris_model, cert, monkeypatch):
    model, X = iris_model
    rows = {"rows": X.head(2).to_dict(orient="records")}
    api.deploy(model, "tlscli", X, serve=False)
    runner = CliRunner()
    half = runner.invoke(cli, ["serve", "tlscli", "--tls-cert", str(cert[0])])
    assert half.exit_code == 1 and "both --tls-cert and --tls-key" in half.output
    assert "Traceback" not in half.output

    key = "env-key-for-the-cli-test-0123456789"
    monkeypatch.setenv("NBDEPLOY_API_KEY", key)
    done = runner.invoke(cli, ["serve", "tlscli", "--host", "0.0.0.0",
                               "--tls-cert", str(cert[0]), "--tls-key", str(cert[1])])
    assert done.exit_code == 0, done.output
    row = Registry().version("tlscli", 1)
    assert (row["host"], row["tls"], row["auth"]) == ("0.0.0.0", 1, 1)
    url = f"https://127.0.0.1:{row['port']}"
    assert url in done.output and "shown once" not in done.output  # the env key, not a new one
    assert httpx.post(f"{url}/predict", json=rows, verify=str(cert[0])).status_code == 401
    ok = httpx.post(f"{url}/predict", json=rows, verify=str(cert[0]),
                    headers={"Authorization": f"Bearer {key}"})
    assert ok.status_code == 200 and ok.json() == model.predict(X.head(2)).tolist()
    assert httpx.get(f"{url}/readyz", verify=str(cert[0])).status_code == 200


def test_a_deployment_served_over_https_stays_https_across_versions_and_rollback(iris_model, cert):
    from sklearn.linear_model import LogisticRegression

    model, X = iris_model
    rows = {"rows": X.head(2).to_dict(orient="records")}
    first = api.deploy(model, "tlsroll", X, tls_cert=cert[0], tls_key=cert[1])
    assert first.url.startswith("https://")
    other = LogisticRegression(C=0.05, max_iter=500).fit(X, model.predict(X))
    second = api.deploy(other, "tlsroll", X)  # no TLS options: the deployment's are reused
    assert second.version == 2 and second.url.startswith("https://")
    assert Registry().version("tlsroll", 1)["pid"] is None  # v1 stopped by the promote
    back = api.rollback("tlsroll")  # restarts v1: over HTTPS again, never plain HTTP
    assert back.version == 1 and back.url.startswith("https://")
    assert Registry().version("tlsroll", 1)["tls"] == 1
    answer = httpx.post(f"{back.url}/predict", json=rows, verify=str(cert[0]))
    assert answer.status_code == 200
    routed = httpx.post(f"{api.endpoint_url('tlsroll')}/predict", json=rows)
    assert routed.status_code == 200 and routed.headers["x-nbdeploy-version"] == "1"
    settings = Registry().deployment("tlsroll")["settings"]
    assert settings["tls"] == {"cert": str(cert[0].resolve()), "key": str(cert[1].resolve())}
    assert "PRIVATE KEY" not in json.dumps(settings)  # paths only, never the key itself
