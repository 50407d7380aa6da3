"""nbdeploy: from a model in a notebook to a versioned, validated, explained service."""

from __future__ import annotations

__version__ = "0.1.0"
