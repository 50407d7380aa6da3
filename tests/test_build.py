"""Bento build helpers that need no server."""

from __future__ import annotations

import pytest
import yaml

from nbdeploy.package import build


def test_libyaml_loader_is_used_only_inside_the_build_and_reads_the_same() -> None:
    original = yaml.safe_load
    text = "name: iris\nlabels: {a: 1}\nitems: [1, 2.5, null, 'x']\n"
    with build._libyaml():
        assert yaml.safe_load is not original
        assert yaml.safe_load(text) == original(text)
    assert yaml.safe_load is original
    with pytest.raises(RuntimeError), build._libyaml():
        raise RuntimeError("a failed build")
    assert yaml.safe_load is original  # restored when the build fails too
