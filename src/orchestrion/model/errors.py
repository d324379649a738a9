"""Errors of the model stage."""

from __future__ import annotations

from orchestrion.errors import ConfigError, TerminalError


class ModelProjectError(ConfigError):
    """A model file is wrong (syntax, configuration, unknown table, cycle); the message names the file."""


class UnknownModel(ModelProjectError):
    """A selection names a model that does not exist."""


class ModelBuildFailed(TerminalError):
    """A model's SQL failed in the warehouse, or its result broke the rules of its kind; the old table stays."""
