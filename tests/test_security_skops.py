"""skops loading trusts exactly the types recorded at deploy time: a file holding any other
type is refused with a clear error (even when its checksum was forged to match)."""

from __future__ import annotations

import operator
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

import nbdeploy.api as api
from nbdeploy.artifacts import load_skops
from nbdeploy.capture.frameworks import SKOPS_FILE, trusted_types
from nbdeploy.errors import TamperedArtifactError
from nbdeploy.package.runtime.integrity import artifact_sha256
from nbdeploy.registry import Registry
from tests import models

pytestmark = pytest.mark.slow


def test_a_skops_file_with_an_untrusted_type_is_refused() -> None:
    import bentoml
    import skops.io as sio

    X, y = models.iris()
    model = LogisticRegression(max_iter=500).fit(X, y)
    api.deploy(model, "skopsy", X, format="skops", serve=False)
    row = Registry().version("skopsy", 1)
    stored = Path(bentoml.models.get(row["model_tag"]).path)
    trusted = trusted_types(str(stored))
    assert "_operator.neg" not in trusted
    loaded, _ = api.load_model("skopsy")  # the genuine file loads
    assert loaded.predict(X.head(3)).tolist() == model.predict(X.head(3)).tolist()

    # swap in a pipeline that calls a function outside the trusted list
    evil = make_pipeline(FunctionTransformer(operator.neg), LogisticRegression(max_iter=500))
    evil.fit(X.to_numpy(), y)
    sio.dump(evil, stored / SKOPS_FILE)
    with pytest.raises(TamperedArtifactError):  # first line of defence: the checksum
        api.load_model("skopsy")
    # someone who can also rewrite the registry gets past the checksum, not past the type list
    Registry().update_version("skopsy", 1, artifact_sha256=artifact_sha256(str(stored)))
    with pytest.raises(api.NbdeployError) as info:
        api.load_model("skopsy")
    message = str(info.value)
    assert "refusing to load" in message and "['_operator.neg']" in message
    assert "trusted list" in message and "Traceback" not in message
    with pytest.raises(api.NbdeployError, match=r"_operator\.neg"):
        load_skops(stored / SKOPS_FILE, trusted)
    # trusting it explicitly is the only way in
    assert isinstance(load_skops(stored / SKOPS_FILE, [*trusted, "_operator.neg"]).predict(
        np.asarray(X.head(2))), np.ndarray)
