"""Exceptions nbdeploy raises; each message says what to do next."""

from __future__ import annotations


class NbdeployError(Exception):
    """Base class: a problem the user can fix, shown as one clear line."""


class UnsupportedModelError(NbdeployError, TypeError):
    """The object cannot be captured by any framework adapter."""


class SchemaError(NbdeployError, ValueError):
    """The sample cannot give a usable input schema."""


class NotFoundError(NbdeployError, LookupError):
    """A deployment or version does not exist."""


class RegistryBusyError(NbdeployError):
    """Another process holds the registry lock for too long."""


class ServeError(NbdeployError):
    """A model server could not be started, stopped or reached."""


class TamperedArtifactError(NbdeployError):
    """A stored artifact no longer matches the sha256 recorded at deploy time."""
