"""Columns marked sensitive at deploy time: a bad mapping stores nothing, the reference sample
kept with a version never holds them in clear, and redeploying an unchanged model applies a
new setting to the version it reuses."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

import nbdeploy.api as api
from nbdeploy import config, monitoring
from nbdeploy.registry import Registry

pytestmark = pytest.mark.slow

EMAILS = ["ann.private@example.org", "bob.private@example.org", "cy.private@example.org",
          "dee.private@example.org"]
SSNS = ["111-22-3333", "222-33-4444", "333-44-5555", "444-55-6666"]
HEX64 = re.compile(r"[0-9a-f]{64}")


def frame() -> pd.DataFrame:
    return pd.DataFrame({"email": EMAILS, "age": [31.0, 45.0, 52.0, 28.0], "ssn": SSNS})


def clear_values_in(path: Path) -> list[Path]:
    """Files under ``path`` that hold an e-mail address or an SSN of the sample in clear."""
    secrets = [v.encode() for v in EMAILS + SSNS]
    return [p for p in path.rglob("*") if p.is_file() and any(s in p.read_bytes() for s in secrets)]


def bento_reference(row: dict) -> list[dict]:
    import bentoml

    bento = Path(bentoml.bentos.get(row["bento_tag"]).path)
    return json.loads((bento / "src" / "reference.json").read_text())


def test_a_bad_mapping_leaves_no_version_behind() -> None:
    model = lambda df: df["age"].to_numpy() * 2  # noqa: E731 - a plain function is a valid model
    with pytest.raises(api.NbdeployError, match="unknown columns \\['nope'\\]"):
        api.deploy(model, "priv_new", frame(), sensitive={"nope": "hash"}, serve=False)
    assert [d["name"] for d in Registry().deployments()] == []
    api.deploy(model, "priv_new", frame(), serve=False)
    other = lambda df: df["age"].to_numpy() * 3  # noqa: E731
    with pytest.raises(api.NbdeployError, match="bad modes \\{'ssn': 'encrypt'\\}"):
        api.deploy(other, "priv_new", frame(), sensitive={"ssn": "encrypt"}, serve=False)
    assert [v["version"] for v in Registry().versions("priv_new")] == [1]
    assert len(list((config.home() / "builds" / "priv_new").iterdir())) == 1  # v1's build only


def test_the_stored_reference_sample_holds_no_sensitive_value_in_clear() -> None:
    model = lambda df: df["age"].to_numpy() * 2  # noqa: E731
    dep = api.deploy(model, "priv_ref", frame(), sensitive={"email": "hash", "ssn": "drop"}, serve=False)
    ref = api.load_reference("priv_ref")
    assert "ssn" not in ref.columns and ref["age"].tolist() == [31.0, 45.0, 52.0, 28.0]
    assert all(HEX64.fullmatch(v) for v in ref["email"])
    # the same digest the prediction log writes for that value (drift compares like with like)
    assert ref["email"][0] == monitoring.predlog("priv_ref").hash_value(EMAILS[0])
    rows = bento_reference(dep.row)
    assert all("ssn" not in r and HEX64.fullmatch(r["email"]) for r in rows)
    import bentoml

    assert clear_values_in(Path(bentoml.bentos.get(dep.row["bento_tag"]).path)) == []
    assert clear_values_in(config.home()) == []


def test_redeploying_an_unchanged_model_applies_the_sensitive_setting() -> None:
    model = lambda df: df["age"].to_numpy() * 2  # noqa: E731
    first = api.deploy(model, "priv_again", frame(), serve=False)
    assert api.load_reference("priv_again")["email"].tolist() == EMAILS  # nothing marked yet
    again = api.deploy(model, "priv_again", frame(), sensitive={"email": "hash", "ssn": "drop"},
                       serve=False)
    assert again.version == first.version == 1
    assert [v["version"] for v in Registry().versions("priv_again")] == [1]
    settings = Registry().deployment("priv_again")["settings"]
    assert settings["sensitive"] == {"email": "hash", "ssn": "drop"}
    assert monitoring.predlog("priv_again").sensitive == {"email": "hash", "ssn": "drop"}
    ref = api.load_reference("priv_again")
    assert "ssn" not in ref.columns and all(HEX64.fullmatch(v) for v in ref["email"])
    rows = bento_reference(again.row)
    assert all("ssn" not in r and HEX64.fullmatch(r["email"]) for r in rows)
    # a third, identical redeploy must not hash the digests again
    api.deploy(model, "priv_again", frame(), sensitive={"email": "hash", "ssn": "drop"}, serve=False)
    assert api.load_reference("priv_again")["email"].tolist() == ref["email"].tolist()
