"""Open Inference Protocol (KServe V2) on the generated service, through tritonclient."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

import nbdeploy.api as api
from nbdeploy.registry import Registry
from nbdeploy.serve import process
from tests import models

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served():
    X, y = models.iris()
    model = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y)
    dep = api.deploy(model, "v2-iris", X)
    row = dep.row  # read now: each test gets its own NBDEPLOY_HOME
    router = Registry().deployment("v2-iris").get("router_pid")
    yield dep.url, model, X
    process.stop_pid(router, grace=3)
    process.stop_pid(row["pid"], grace=3)


def test_tritonclient_infers_one_tensor_per_column(served):
    import tritonclient.http as triton

    url, model, X = served
    client = triton.InferenceServerClient(url=url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready()
    meta = client.get_model_metadata("v2-iris")
    assert meta["name"] == "v2-iris" and [i["name"] for i in meta["inputs"]] == list(X.columns)
    rows = X.head(7)
    inputs = []
    for col in X.columns:
        tensor = triton.InferInput(col, [len(rows)], "FP64")
        tensor.set_data_from_numpy(rows[col].to_numpy(dtype=np.float64), binary_data=False)
        inputs.append(tensor)
    outputs = [triton.InferRequestedOutput("predict", binary_data=False),
               triton.InferRequestedOutput("predict_proba", binary_data=False)]
    result = client.infer("v2-iris", inputs, outputs=outputs)
    np.testing.assert_array_equal(result.as_numpy("predict"), model.predict(rows))
    np.testing.assert_allclose(result.as_numpy("predict_proba").reshape(len(rows), -1),
                               model.predict_proba(rows))


def test_single_2d_tensor_and_standard_errors(served):
    base, model, X = served
    url = f"{base}/v2/models/v2-iris/infer"
    body = {"inputs": [{"name": "input-0", "shape": [3, 4], "datatype": "FP64",
                        "data": X.head(3).to_numpy().ravel().tolist()}]}
    resp = httpx.post(url, json=body)
    assert resp.status_code == 200
    out = resp.json()
    assert out["model_name"] == "v2-iris" and out["model_version"] == "1"
    assert out["outputs"][0]["data"] == model.predict(X.head(3)).tolist()
    bad_cases = {
        "not a number": {"inputs": [{"name": c, "shape": [1], "datatype": "BYTES", "data": ["x"]}
                                    for c in X.columns]},
        "ragged": {"inputs": [{"name": c, "shape": [i + 1], "datatype": "FP64", "data": [1.0] * (i + 1)}
                              for i, c in enumerate(X.columns)]},
        "no inputs": {"inputs": []},
        "wrong shape": {"inputs": [{"name": "input-0", "shape": [1, 3], "datatype": "FP64",
                                    "data": [1, 2, 3]}]},
    }
    for title, payload in bad_cases.items():
        resp = httpx.post(url, json=payload)
        assert resp.status_code == 400, title
        assert set(resp.json()) == {"error"}, title
    assert "sepal length (cm)" in httpx.post(url, json=bad_cases["not a number"]).json()["error"]
    missing = httpx.post(f"{base}/v2/models/nope/infer", json=body)
    assert missing.status_code == 404 and "v2-iris" in missing.json()["error"]
    assert httpx.get(f"{base}/v2/health/live").json() == {"live": True}


def test_v2_routes_are_in_the_openapi_document_and_unknown_ones_answer_json(served):
    url, _, _ = served
    doc = httpx.get(f"{url}/docs.json", timeout=10).json()
    infer = doc["paths"]["/v2/models/{model}/infer"]["post"]
    assert infer["parameters"][0]["schema"]["enum"] == ["v2-iris"]
    body = infer["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["inputs"] and body["properties"]["inputs"]["minItems"] == 1
    assert {"200", "400", "404", "415", "422"} <= set(infer["responses"])
    assert {"/v2/health/live", "/v2/health/ready", "/v2/models/{model}"} <= set(doc["paths"])
    assert "/predict" in doc["paths"]  # BentoML's own operations are still there
    missing = httpx.get(f"{url}/v2/models/v2-iris/nonsense", timeout=10)
    assert missing.status_code == 404 and "/v2/models/v2-iris" in missing.json()["error"]
    no_type = httpx.post(f"{url}/v2/models/v2-iris/infer", timeout=10, json={
        "inputs": [{"name": c, "shape": [1], "data": [1.0]} for c in served[2].columns]})
    assert no_type.status_code == 400 and "'datatype'" in no_type.json()["error"]
