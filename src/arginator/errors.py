"""Errors a user can act on. The CLI prints their message as one line and exits non-zero, without a traceback."""


class ArginatorError(Exception):
    """Base class for problems caused by the user's input, files or configuration."""


class ConfigError(ArginatorError, ValueError):
    """A configuration file or override is malformed, has an unknown key or a wrongly typed value."""


class DataError(ArginatorError, ValueError):
    """An embedding or label file is unreadable, inconsistent or does not match what the run expects."""


class InvalidInput(DataError):  # noqa: N818 (the name clients and the API speak of)
    """Input rows a model cannot take: wrong shape or dimension, not numeric, NaN/Inf, empty."""


class ModelLoadError(ArginatorError):
    """A model file is missing, corrupt, or not an arginator model."""
