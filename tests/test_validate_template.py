"""example_notebooks/validation_template.ipynb, run by a real kernel against a real HTTP server.

The server is a small stand-in speaking the served-API contract (POST /predict and
/predict_proba with {"rows": [...]}), so the template is checked without a bento.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import train_test_split

from nbdeploy.validate.runner import run_notebook

TEMPLATE = Path(__file__).parent.parent / "example_notebooks" / "validation_template.ipynb"

pytestmark = pytest.mark.slow


def _serve(model: RandomForestClassifier, with_proba: bool) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            frame = pd.DataFrame(body["rows"])
            if self.path == "/predict":
                answer = [int(p) for p in model.predict(frame)]
            elif self.path == "/predict_proba" and with_proba:
                answer = [
                    {str(label): float(p) for label, p in zip(model.classes_, row, strict=True)}
                    for row in model.predict_proba(frame)
                ]
            else:
                self.send_error(404)
                return
            payload = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def model() -> RandomForestClassifier:
    data = load_breast_cancer(as_frame=True)
    X_train, _, y_train, _ = train_test_split(
        data.data, data.target, test_size=0.25, random_state=0
    )
    return RandomForestClassifier(n_estimators=40, random_state=0).fit(X_train, y_train)


@pytest.fixture
def endpoint(model: RandomForestClassifier, request: pytest.FixtureRequest) -> Iterator[str]:
    server = _serve(model, with_proba=getattr(request, "param", True))
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _params(endpoint: str | None, **extra: object) -> dict:
    return {"model_name": "breast_cancer", "model_version": 1, "model_tag": "breast_cancer:t",
            "endpoint": endpoint, **extra}


def test_template_records_metrics_and_passes(endpoint: str, tmp_path: Path) -> None:
    result = run_notebook(TEMPLATE, parameters=_params(endpoint), output_path=tmp_path / "v.ipynb")
    assert result.status == "passed", result.reason
    assert result.warnings == []
    assert result.metrics["rows"] == 143
    assert 0.9 <= result.metrics["accuracy"] <= 1.0
    assert 0.9 <= result.metrics["f1"] <= 1.0
    assert result.metrics["auc"] > 0.95


@pytest.mark.parametrize("endpoint", [False], indirect=True)
def test_template_gate_fails_with_its_message(endpoint: str, tmp_path: Path) -> None:
    result = run_notebook(
        TEMPLATE, parameters=_params(endpoint, threshold=0.999), output_path=tmp_path / "v.ipynb"
    )
    assert result.status == "failed"
    assert "is below the threshold 0.999: keep the current version" in result.reason
    assert "auc" not in result.metrics  # this server has no /predict_proba
    assert result.metrics["rows"] == 143


def test_template_without_endpoint_says_how_to_run_it(tmp_path: Path) -> None:
    result = run_notebook(TEMPLATE, parameters=_params(None), output_path=tmp_path / "v.ipynb")
    assert result.status == "failed"
    assert "ValueError: no endpoint" in result.reason and "nbdeploy validate" in result.reason
